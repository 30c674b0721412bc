//! COM_STMT_EXECUTE as a client sends it: decoded for a statement of 0 to 63 parameters, with
//! or without types bound by an earlier execute and with some parameters sent as long data.
//! A request that decodes is re-encoded for a backend's statement id (as the proxy forwards
//! it) and must decode back to the same values.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use protocol::stmt::{Execute, ParamType, ParamValue};

fuzz_target!(|data: &[u8]| {
    let [count, flags, payload @ ..] = data else {
        return;
    };
    let param_count = usize::from(count % 64);
    // Types an earlier execute bound (every other input), and long data for the parameters
    // whose bit is set in the flags byte.
    let previous: Vec<ParamType> = if flags & 1 != 0 {
        (0..param_count)
            .map(|i| ParamType {
                column_type: payload.get(i).copied().unwrap_or(0xfd),
                unsigned: i % 2 == 1,
            })
            .collect()
    } else {
        Vec::new()
    };
    let long_data: Vec<Option<Vec<u8>>> = (0..param_count)
        .map(|i| (i < 7 && flags & (2 << i) != 0).then(|| vec![b'x'; i]))
        .collect();
    let Ok(execute) = Execute::decode(payload, param_count, &previous, &long_data) else {
        return;
    };
    assert_eq!(execute.values.len(), param_count);
    let mut forwarded = BytesMut::new();
    execute.encode(0x0102_0304, &mut forwarded);
    let again =
        Execute::decode(&forwarded, param_count, &[], &[]).expect("a re-encoded execute decodes");
    assert_eq!(again.statement_id, 0x0102_0304);
    assert_eq!(again.flags, execute.flags);
    for (a, b) in execute.values.iter().zip(&again.values) {
        match (a, b) {
            (ParamValue::Double(x), ParamValue::Double(y)) => assert_eq!(x.to_bits(), y.to_bits()),
            _ => assert_eq!(a, b),
        }
    }
});
