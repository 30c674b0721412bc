//! Node expressions: the compact way to write a sharded table's physical layout.
//!
//! A node expression is `data_source[.table]`, where each part may contain
//! groups: `{a..b}` (inclusive integer range; a bound written with a leading
//! zero, as in `{00..15}`, pads every number to the wider bound's width) and
//! `{x,y,z}` (a list). The expansion is the cartesian product of the groups,
//! the leftmost group varying slowest, so `ds_{0..1}.payment_{0..1}` is
//! `ds_0.payment_0, ds_0.payment_1, ds_1.payment_0, ds_1.payment_1`. Without
//! a `.table` part the physical table has the logical table's name.

/// Upper bound on the nodes one expression may produce (a typo such as
/// `{0..100000}` must not allocate without bound).
pub(crate) const MAX_NODES: usize = 65_536;

/// Expands `expr` into `(data_source, table)` pairs, in order.
pub(crate) fn expand(expr: &str, logical_table: &str) -> Result<Vec<(String, String)>, String> {
    let (ds_part, table_part) = split_dot(expr)?;
    let sources = expand_part(ds_part, expr)?;
    let tables = match table_part {
        Some(t) => expand_part(t, expr)?,
        None => vec![logical_table.to_owned()],
    };
    if sources.len().saturating_mul(tables.len()) > MAX_NODES {
        return Err(format!("'{expr}' expands to more than {MAX_NODES} nodes"));
    }
    let mut out = Vec::with_capacity(sources.len() * tables.len());
    for ds in &sources {
        for t in &tables {
            out.push((ds.clone(), t.clone()));
        }
    }
    Ok(out)
}

/// Splits at the one `.` outside braces.
fn split_dot(expr: &str) -> Result<(&str, Option<&str>), String> {
    let mut depth = 0usize;
    let mut dot = None;
    for (i, c) in expr.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                if dot.is_some() {
                    return Err(format!(
                        "'{expr}' has more than one '.'; a node is data_source.table"
                    ));
                }
                dot = Some(i);
            }
            _ => {}
        }
    }
    Ok(match dot {
        Some(i) => (&expr[..i], Some(&expr[i + 1..])),
        None => (expr, None),
    })
}

/// Expands one side (data source or table) of an expression.
fn expand_part(part: &str, expr: &str) -> Result<Vec<String>, String> {
    if part.is_empty() {
        return Err(format!("'{expr}' has an empty name"));
    }
    let mut results = vec![String::new()];
    let mut rest = part;
    while !rest.is_empty() {
        if let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!("unexpected '}}' in '{expr}'"));
            }
            let literal = &rest[..open];
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in '{expr}'"))?;
            let group = &after[..close];
            if group.contains('{') {
                return Err(format!("nested '{{' in '{expr}'"));
            }
            let items = expand_group(group, expr)?;
            if results.len().saturating_mul(items.len()) > MAX_NODES {
                return Err(format!("'{expr}' expands to more than {MAX_NODES} nodes"));
            }
            let mut next = Vec::with_capacity(results.len() * items.len());
            for prefix in &results {
                for item in &items {
                    next.push(format!("{prefix}{literal}{item}"));
                }
            }
            results = next;
            rest = &after[close + 1..];
        } else {
            for r in &mut results {
                r.push_str(rest);
            }
            rest = "";
        }
    }
    Ok(results)
}

/// Expands the inside of one `{...}` group.
fn expand_group(group: &str, expr: &str) -> Result<Vec<String>, String> {
    if let Some((a, b)) = group.split_once("..") {
        let start = parse_bound(a, group, expr)?;
        let end = parse_bound(b, group, expr)?;
        if start > end {
            return Err(format!(
                "range '{{{group}}}' in '{expr}' starts after it ends"
            ));
        }
        let count = usize::try_from(end - start + 1).unwrap_or(usize::MAX);
        if count > MAX_NODES {
            return Err(format!("'{expr}' expands to more than {MAX_NODES} nodes"));
        }
        let padded = (a.len() > 1 && a.starts_with('0')) || (b.len() > 1 && b.starts_with('0'));
        let width = if padded { a.len().max(b.len()) } else { 0 };
        Ok((start..=end).map(|n| format!("{n:0width$}")).collect())
    } else {
        let items: Vec<String> = group.split(',').map(|s| s.trim().to_owned()).collect();
        if items.iter().any(String::is_empty) {
            return Err(format!("empty item in '{{{group}}}' in '{expr}'"));
        }
        Ok(items)
    }
}

fn parse_bound(s: &str, group: &str, expr: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "range '{{{group}}}' in '{expr}' needs two non-negative integers"
        ));
    }
    s.parse::<u64>()
        .map_err(|_| format!("range '{{{group}}}' in '{expr}' has a bound that is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        expand(expr, "t")
            .expect("valid expression")
            .into_iter()
            .map(|(d, t)| format!("{d}.{t}"))
            .collect()
    }

    #[test]
    fn cartesian_product_data_source_slowest() {
        assert_eq!(
            names("ds_{0..1}.payment_{0..1}"),
            [
                "ds_0.payment_0",
                "ds_0.payment_1",
                "ds_1.payment_0",
                "ds_1.payment_1"
            ]
        );
    }

    #[test]
    fn table_defaults_to_logical_name() {
        assert_eq!(names("ds_{0..2}"), ["ds_0.t", "ds_1.t", "ds_2.t"]);
        assert_eq!(names("ds_x"), ["ds_x.t"]);
    }

    #[test]
    fn padding_and_lists() {
        assert_eq!(names("ds.t_{08..10}"), ["ds.t_08", "ds.t_09", "ds.t_10"]);
        assert_eq!(
            names("{a, b}.t_{1,3}"),
            ["a.t_1", "a.t_3", "b.t_1", "b.t_3"]
        );
    }

    #[test]
    fn errors_are_precise() {
        let err = |e: &str| expand(e, "t").expect_err("must fail");
        assert_eq!(err("ds_{0..1"), "unclosed '{' in 'ds_{0..1'");
        assert_eq!(
            err("ds_{3..1}"),
            "range '{3..1}' in 'ds_{3..1}' starts after it ends"
        );
        assert_eq!(
            err("a.b.c"),
            "'a.b.c' has more than one '.'; a node is data_source.table"
        );
        assert_eq!(err("ds_}"), "unexpected '}' in 'ds_}'");
        assert_eq!(err(".t"), "'.t' has an empty name");
        assert_eq!(
            err("ds_{x..2}"),
            "range '{x..2}' in 'ds_{x..2}' needs two non-negative integers"
        );
        assert_eq!(
            err("ds_{0..99999}.t_{0..9}"),
            "'ds_{0..99999}.t_{0..9}' expands to more than 65536 nodes"
        );
    }
}
