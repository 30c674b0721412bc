//! The merge operators over in-memory shards: ties, NULLs, empty shards, one shard, all
//! empty, aggregates, DISTINCT, HAVING, LIMIT, both protocols.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::VecDeque;
use std::convert::Infallible;

use merge::{merge, Layout, Limits, MergeError, Sink};
use protocol::constants::column_type;
use router::{
    Aggregation, BinOp, Col, Constant, MergeExpr, MergeShape, MergeSpec, Operand, Role, SetOp,
    SortKey,
};
use support::{col, text_row, Mem};

#[derive(Default)]
struct Out(Vec<Vec<u8>>);

impl Sink for Out {
    type Error = Infallible;
    async fn row(&mut self, payload: &[u8]) -> Result<(), Infallible> {
        self.0.push(payload.to_vec());
        Ok(())
    }
}

/// Decodes text rows back to strings (NULL as "NULL").
fn decode(rows: &[Vec<u8>], width: usize) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            let mut out = Vec::new();
            let mut pos = 0;
            for _ in 0..width {
                if r[pos] == 0xfb {
                    out.push("NULL".to_string());
                    pos += 1;
                } else {
                    let len = r[pos] as usize;
                    out.push(String::from_utf8(r[pos + 1..pos + 1 + len].to_vec()).unwrap());
                    pos += 1 + len;
                }
            }
            out
        })
        .collect()
}

fn run(
    spec: &MergeSpec,
    layout: &Layout,
    shards: Vec<Vec<Vec<Option<&str>>>>,
) -> Result<Vec<Vec<String>>, MergeError> {
    run_with_warnings(spec, layout, shards).map(|(rows, _)| rows)
}

/// The merged rows and the merge's own warnings.
fn run_with_warnings(
    spec: &MergeSpec,
    layout: &Layout,
    shards: Vec<Vec<Vec<Option<&str>>>>,
) -> Result<(Vec<Vec<String>>, Vec<merge::Warning>), MergeError> {
    let mut mem = Mem(shards
        .into_iter()
        .map(|rows| rows.iter().map(|r| text_row(r)).collect())
        .collect());
    let mut out = Out::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let merged = rt
        .block_on(merge(
            spec,
            layout,
            Limits { memory: 1 << 20 },
            &mut mem,
            &mut out,
        ))
        .map_err(|e| match e {
            merge::Failure::Merge(m) => m,
            merge::Failure::Io(never) => match never {},
        })?;
    Ok((decode(&out.0, layout.visible), merged.warnings))
}

fn sorted(keys: &[(Col, bool)]) -> MergeSpec {
    MergeSpec {
        shape: MergeShape {
            order_by: keys
                .iter()
                .map(|&(column, descending)| SortKey { column, descending })
                .collect(),
            ..MergeShape::default()
        },
        ..MergeSpec::default()
    }
}

#[test]
fn k_way_merge_orders_nulls_first_and_case_insensitively_with_ties_kept() {
    let layout = Layout::new(
        vec![
            col("name", column_type::VAR_STRING, 0),
            col("id", column_type::LONG, 0),
        ],
        0,
        false,
    )
    .unwrap();
    let spec = sorted(&[(Col::Item(0), false), (Col::Item(1), false)]);
    let got = run(
        &spec,
        &layout,
        vec![
            vec![
                vec![None, Some("9")],
                vec![Some("alice"), Some("1")],
                vec![Some("Bob"), Some("4")],
            ],
            vec![],
            vec![
                vec![Some("ALICE"), Some("2")],
                vec![Some("bob"), Some("3")],
                vec![Some("carol"), Some("5")],
            ],
        ],
    )
    .unwrap();
    let names: Vec<String> = got.iter().map(|r| format!("{}:{}", r[0], r[1])).collect();
    assert_eq!(
        names,
        ["NULL:9", "alice:1", "ALICE:2", "bob:3", "Bob:4", "carol:5"]
    );
}

#[test]
fn descending_numeric_sort_with_offset_and_limit_and_hidden_key() {
    // Visible id; hidden amount (DECIMAL) sorted DESC.
    let layout = Layout::new(
        vec![
            col("id", column_type::LONG, 0),
            col("__h", column_type::NEWDECIMAL, 2),
        ],
        1,
        false,
    )
    .unwrap();
    let mut spec = sorted(&[(Col::Hidden(0), true)]);
    spec.shape.hidden = 1;
    spec.offset = 1;
    spec.limit = Some(2);
    let got = run(
        &spec,
        &layout,
        vec![
            vec![
                vec![Some("1"), Some("100.50")],
                vec![Some("2"), Some("9.99")],
            ],
            vec![
                vec![Some("3"), Some("20.00")],
                vec![Some("4"), Some("-5.00")],
            ],
        ],
    )
    .unwrap();
    assert_eq!(got, vec![vec!["3".to_string()], vec!["2".to_string()]]);
}

#[test]
fn all_shards_empty_gives_no_rows_and_one_shard_passes_through() {
    let layout = Layout::new(vec![col("id", column_type::LONG, 0)], 0, false).unwrap();
    let spec = sorted(&[(Col::Item(0), false)]);
    assert!(run(&spec, &layout, vec![vec![], vec![]])
        .unwrap()
        .is_empty());
    let got = run(&spec, &layout, vec![vec![vec![Some("1")], vec![Some("2")]]]).unwrap();
    assert_eq!(got.len(), 2);
}

fn aggregation(group_by: Vec<Col>, roles: Vec<(Col, Role)>) -> MergeSpec {
    MergeSpec {
        shape: MergeShape {
            aggregation: Some(Aggregation {
                group_by,
                roles,
                distinct_keys: Vec::new(),
            }),
            ..MergeShape::default()
        },
        ..MergeSpec::default()
    }
}

#[test]
fn scalar_aggregates_over_no_rows_give_count_zero_and_null_sum() {
    let layout = Layout::new(
        vec![
            col("c", column_type::LONGLONG, 0),
            col("s", column_type::NEWDECIMAL, 2),
        ],
        0,
        false,
    )
    .unwrap();
    let spec = aggregation(
        vec![],
        vec![(Col::Item(0), Role::Count), (Col::Item(1), Role::Sum)],
    );
    // Every shard answers one row; none has data.
    let got = run(
        &spec,
        &layout,
        vec![vec![vec![Some("0"), None]], vec![vec![Some("0"), None]]],
    )
    .unwrap();
    assert_eq!(got, vec![vec!["0".to_string(), "NULL".to_string()]]);
    // DISTINCT aggregates group the shards by their argument: no rows at all.
    let got = run(&spec, &layout, vec![vec![], vec![]]).unwrap();
    assert_eq!(got, vec![vec!["0".to_string(), "NULL".to_string()]]);
}

#[test]
fn groups_combine_across_shards_with_avg_min_max_and_having() {
    // city, COUNT(*), AVG(x) [decimals 4], MIN(x), hidden SUM(x), hidden COUNT(x).
    let layout = Layout::new(
        vec![
            col("city", column_type::VAR_STRING, 0),
            col("n", column_type::LONGLONG, 0),
            col("a", column_type::NEWDECIMAL, 4),
            col("m", column_type::LONG, 0),
            col("s", column_type::NEWDECIMAL, 0),
            col("c", column_type::LONGLONG, 0),
        ],
        2,
        false,
    )
    .unwrap();
    let mut spec = aggregation(
        vec![Col::Item(0)],
        vec![
            (Col::Item(1), Role::Count),
            (
                Col::Item(2),
                Role::Avg {
                    sum: Col::Hidden(0),
                    count: Col::Hidden(1),
                },
            ),
            (Col::Item(3), Role::Min),
            (Col::Hidden(0), Role::Sum),
            (Col::Hidden(1), Role::Count),
        ],
    );
    spec.shape.hidden = 2;
    spec.shape.having = Some(MergeExpr::Binary(
        Box::new(MergeExpr::Column(Col::Item(1))),
        BinOp::Gt,
        Box::new(MergeExpr::Value(Operand::Const(Constant::Int(1)))),
    ));
    let got = run(
        &spec,
        &layout,
        vec![
            vec![
                vec![
                    Some("oslo"),
                    Some("2"),
                    Some("1.5000"),
                    Some("1"),
                    Some("3"),
                    Some("2"),
                ],
                vec![
                    Some("rome"),
                    Some("1"),
                    Some("7.0000"),
                    Some("7"),
                    Some("7"),
                    Some("1"),
                ],
            ],
            vec![vec![
                Some("Oslo"),
                Some("1"),
                Some("-4.0000"),
                Some("-4"),
                Some("-4"),
                Some("1"),
            ]],
        ],
    )
    .unwrap();
    // oslo: count 3, avg (3 - 4) / 3, min -4; rome filtered by HAVING count > 1.
    assert_eq!(
        got,
        vec![vec![
            "oslo".to_string(),
            "3".into(),
            "-0.3333".into(),
            "-4".into()
        ]]
    );
}

#[test]
fn count_distinct_counts_values_once_across_shards() {
    let layout = Layout::new(
        vec![
            col("n", column_type::LONGLONG, 0),
            col("x", column_type::VAR_STRING, 0),
        ],
        1,
        false,
    )
    .unwrap();
    let mut spec = aggregation(
        vec![],
        vec![(
            Col::Item(0),
            Role::Distinct {
                function: router::DistinctFn::Count,
                args: vec![Col::Hidden(0)],
            },
        )],
    );
    spec.shape.hidden = 1;
    let got = run(
        &spec,
        &layout,
        vec![
            vec![
                vec![Some("1"), Some("a")],
                vec![Some("1"), Some("b")],
                vec![Some("0"), None],
            ],
            vec![vec![Some("1"), Some("A ")], vec![Some("1"), Some("c")]],
        ],
    )
    .unwrap();
    assert_eq!(got, vec![vec!["3".to_string()]]);
}

#[test]
fn distinct_streams_and_the_memory_bound_is_enforced() {
    let layout = Layout::new(vec![col("x", column_type::LONG, 0)], 0, false).unwrap();
    let spec = MergeSpec {
        shape: MergeShape {
            distinct: true,
            ..MergeShape::default()
        },
        ..MergeSpec::default()
    };
    let got = run(
        &spec,
        &layout,
        vec![
            vec![vec![Some("1")], vec![Some("2")]],
            vec![vec![Some("2")], vec![Some("3")]],
        ],
    )
    .unwrap();
    assert_eq!(got.len(), 3);
    let many: Vec<Vec<Option<String>>> = (0..100_000).map(|i| vec![Some(i.to_string())]).collect();
    let rows: Vec<Vec<Option<&str>>> = many
        .iter()
        .map(|r| r.iter().map(|c| c.as_deref()).collect())
        .collect();
    assert_eq!(
        run(&spec, &layout, vec![rows]).unwrap_err(),
        MergeError::MemoryLimit(1 << 20)
    );
}

#[test]
fn binary_rows_merge_and_keep_their_encoding() {
    let layout = Layout::new(
        vec![
            col("id", column_type::LONGLONG, 0),
            col("d", column_type::DOUBLE, 0),
        ],
        1,
        true,
    )
    .unwrap();
    let mut spec = sorted(&[(Col::Hidden(0), false)]);
    spec.shape.hidden = 1;
    let row = |id: i64, d: Option<f64>| {
        let mut r = vec![0u8, if d.is_none() { 0b1000 } else { 0 }];
        r.extend_from_slice(&id.to_le_bytes());
        if let Some(d) = d {
            r.extend_from_slice(&d.to_le_bytes());
        }
        r
    };
    let mut mem = Mem(vec![
        VecDeque::from([row(1, None), row(2, Some(0.5))]),
        VecDeque::from([row(3, Some(-1.0)), row(4, Some(2.0))]),
    ]);
    let mut out = Out::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(merge(
        &spec,
        &layout,
        Limits { memory: 1 << 20 },
        &mut mem,
        &mut out,
    ))
    .ok()
    .unwrap();
    let ids: Vec<i64> = out
        .0
        .iter()
        .map(|r| {
            assert_eq!(r.len(), 2 + 8, "one column: header, 1-byte bitmap, BIGINT");
            i64::from_le_bytes(r[2..10].try_into().unwrap())
        })
        .collect();
    assert_eq!(ids, [1, 3, 2, 4]);
}

#[test]
fn intersect_and_except_count_rows_per_branch_across_shards() {
    let layout = Layout::new(
        vec![
            col("name", column_type::VAR_STRING, 0),
            col("tag", column_type::LONGLONG, 0),
        ],
        1,
        false,
    )
    .unwrap();
    let spec = |except: bool, all: bool| MergeSpec {
        shape: MergeShape {
            hidden: 1,
            order_by: vec![SortKey {
                column: Col::Item(0),
                descending: false,
            }],
            set_op: Some(SetOp {
                except,
                all,
                branches: 2,
            }),
            ..MergeShape::default()
        },
        ..MergeSpec::default()
    };
    // Branch 0 has a, a, b, NULL, c; branch 1 has 'A ' (equal to a under the _ci PAD SPACE
    // collation), NULL, d — spread over two shards.
    let shards = || {
        vec![
            vec![
                vec![Some("a"), Some("0")],
                vec![Some("b"), Some("0")],
                vec![Some("A "), Some("1")],
                vec![None, Some("1")],
            ],
            vec![
                vec![Some("a"), Some("0")],
                vec![None, Some("0")],
                vec![Some("c"), Some("0")],
                vec![Some("d"), Some("1")],
            ],
        ]
    };
    let names = |rows: Vec<Vec<String>>| rows.into_iter().map(|r| r[0].clone()).collect::<Vec<_>>();
    assert_eq!(
        names(run(&spec(false, false), &layout, shards()).unwrap()),
        ["NULL", "a"]
    );
    assert_eq!(
        names(run(&spec(false, true), &layout, shards()).unwrap()),
        ["NULL", "a"]
    );
    assert_eq!(
        names(run(&spec(true, false), &layout, shards()).unwrap()),
        ["b", "c"]
    );
    assert_eq!(
        names(run(&spec(true, true), &layout, shards()).unwrap()),
        ["a", "b", "c"]
    );
    let mut limited = spec(true, true);
    limited.offset = 1;
    limited.limit = Some(1);
    assert_eq!(names(run(&limited, &layout, shards()).unwrap()), ["b"]);
    // A row without its branch is a malformed result, not a guess.
    assert!(matches!(
        run(
            &spec(false, false),
            &layout,
            vec![vec![vec![Some("a"), Some("7")]]]
        ),
        Err(MergeError::Malformed(_))
    ));
    // Everything is held until the last row: bounded by the memory limit.
    let many: Vec<Vec<Option<String>>> = (0..100_000)
        .map(|i| vec![Some(i.to_string()), Some("0".into())])
        .collect();
    let rows: Vec<Vec<Option<&str>>> = many
        .iter()
        .map(|r| r.iter().map(|c| c.as_deref()).collect())
        .collect();
    assert_eq!(
        run(&spec(false, false), &layout, vec![rows]).unwrap_err(),
        MergeError::MemoryLimit(1 << 20)
    );
}

/// GROUP_CONCAT(x ORDER BY k DESC SEPARATOR ', ' LIMIT …) grouped by g: a shard row per
/// (g, element, key) with its row count, `group_concat_max_len` and byte lengths.
fn group_concat_spec(distinct: bool, limit: Option<i64>) -> (MergeSpec, Layout) {
    let layout = Layout::new(
        vec![
            col("g", column_type::LONGLONG, 0),
            col("gc", column_type::VAR_STRING, 0),
            col("e", column_type::VAR_STRING, 0),
            col("k", column_type::LONGLONG, 0),
            col("rows", column_type::LONGLONG, 0),
            col("max", column_type::LONGLONG, 0),
            col("eb", column_type::LONGLONG, 0),
            col("esb", column_type::LONGLONG, 0),
        ],
        6,
        false,
    )
    .unwrap();
    let role = Role::GroupConcat(Box::new(router::GroupConcat {
        distinct,
        element: Col::Hidden(0),
        order_by: vec![SortKey {
            column: Col::Hidden(1),
            descending: true,
        }],
        separator: Operand::Const(Constant::Str(b", ".to_vec())),
        limit: limit.map(|n| router::LimitOperands {
            count: Some(Operand::Const(Constant::Int(n))),
            offset: None,
        }),
        rows: Col::Hidden(2),
        max_len: Col::Hidden(3),
        element_bytes: Col::Hidden(4),
        with_separator_bytes: Col::Hidden(5),
    }));
    let mut spec = aggregation(vec![Col::Item(0)], vec![(Col::Item(1), role)]);
    spec.shape.hidden = 6;
    (spec, layout)
}

/// A shard row of [`group_concat_spec`]: group, element, key, rows, max_len.
fn element_row(g: &str, e: Option<&str>, k: &str, rows: &str, max: &str) -> Vec<Option<String>> {
    let bytes = e.map(|e| e.len().to_string());
    let with_separator = e.map(|e| (e.len() + 2).to_string());
    vec![
        Some(g.into()),
        Some(String::new()),
        e.map(str::to_owned),
        Some(k.into()),
        Some(rows.into()),
        Some(max.into()),
        bytes,
        with_separator,
    ]
}

fn group_concat_run(
    spec: &MergeSpec,
    layout: &Layout,
    shards: &[Vec<Vec<Option<String>>>],
) -> (Vec<Vec<String>>, Vec<String>) {
    let shards: Vec<Vec<Vec<Option<&str>>>> = shards
        .iter()
        .map(|rows| {
            rows.iter()
                .map(|r| r.iter().map(|c| c.as_deref()).collect())
                .collect()
        })
        .collect();
    let (rows, warnings) = run_with_warnings(spec, layout, shards).unwrap();
    (rows, warnings.into_iter().map(|w| w.message).collect())
}

#[test]
fn group_concat_orders_repeats_and_skips_elements_across_shards() {
    let (spec, layout) = group_concat_spec(false, None);
    let shards = vec![
        vec![
            element_row("1", Some("b"), "2", "2", "100"),
            element_row("1", None, "9", "3", "100"),
            element_row("2", Some("z"), "1", "1", "100"),
        ],
        vec![
            element_row("1", Some("a"), "5", "1", "100"),
            // Equal to "a" under the collation, another element all the same.
            element_row("1", Some("A"), "1", "1", "100"),
            element_row("1", Some("b"), "2", "1", "100"),
            element_row("3", None, "1", "4", "100"),
        ],
    ];
    let (rows, warnings) = group_concat_run(&spec, &layout, &shards);
    assert_eq!(
        rows,
        vec![
            vec!["1".to_string(), "a, b, b, b, A".to_string()],
            vec!["2".to_string(), "z".to_string()],
            vec!["3".to_string(), "NULL".to_string()],
        ]
    );
    assert!(warnings.is_empty());
    // DISTINCT keeps one of "a" and "A" (the first in the call's order) and one "b"; LIMIT 2.
    let (spec, layout) = group_concat_spec(true, Some(2));
    let (rows, _) = group_concat_run(&spec, &layout, &shards);
    assert_eq!(rows[0], vec!["1".to_string(), "a, b".to_string()]);
}

#[test]
fn group_concat_is_cut_at_max_len_on_a_character_and_counts_rows_across_groups() {
    let (spec, layout) = group_concat_spec(false, None);
    // Group 1: "é" (2 bytes) then "xyz": "é, xyz" is 7 bytes, cut at 5 → "é, x" (row 2).
    // Group 2: "ab", "éé": "ab, éé" is 8 bytes; cut at 5 → "ab, " would split "é": "ab, " is
    // 4 bytes (row 4: the call's rows go on counting across groups).
    let shards = vec![
        vec![
            element_row("1", Some("é"), "9", "1", "5"),
            element_row("2", Some("éé"), "1", "1", "5"),
        ],
        vec![
            element_row("1", Some("xyz"), "1", "1", "5"),
            element_row("2", Some("ab"), "5", "1", "5"),
        ],
    ];
    let (rows, warnings) = group_concat_run(&spec, &layout, &shards);
    assert_eq!(
        rows,
        vec![
            vec!["1".to_string(), "é, x".to_string()],
            vec!["2".to_string(), "ab, ".to_string()],
        ]
    );
    assert_eq!(
        warnings,
        vec![
            "Row 2 was cut by GROUP_CONCAT()".to_string(),
            "Row 4 was cut by GROUP_CONCAT()".to_string(),
        ]
    );
    // Where the cut falls is counted in the data's bytes: "é" stored in one byte (latin1 read
    // as utf8mb4) leaves room for ", xy".
    let mut shards = shards;
    shards[0][0][6] = Some("1".into());
    shards[0][0][7] = Some("3".into());
    let (rows, _) = group_concat_run(&spec, &layout, &shards);
    assert_eq!(rows[0], vec!["1".to_string(), "é, xy".to_string()]);
    // An element cut where its bytes differ between the two cannot be cut exactly: refused.
    shards[1][0][6] = Some("4".into());
    shards[1][0][7] = Some("6".into());
    let err = run_with_warnings(
        &spec,
        &layout,
        shards
            .iter()
            .map(|rows| {
                rows.iter()
                    .map(|r| r.iter().map(|c| c.as_deref()).collect())
                    .collect()
            })
            .collect(),
    )
    .unwrap_err();
    assert!(matches!(err, MergeError::Unsupported(_)), "{err:?}");
}
