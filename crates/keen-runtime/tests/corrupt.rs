//! Corrupt and hostile files: every one must give `Err`, never a panic or a huge allocation.

mod common;

use keen_runtime::*;
use proptest::prelude::*;

fn valid() -> Vec<u8> {
    common::small_cnn(1).to_bytes().unwrap()
}

/// Splits a file into its JSON header and its data section.
fn split(bytes: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let len = u64::from_le_bytes(bytes[12..20].try_into().unwrap()) as usize;
    let json = serde_json::from_slice(&bytes[20..20 + len]).unwrap();
    let data_start = (20 + len).div_ceil(64) * 64;
    (json, bytes.get(data_start..).unwrap_or(&[]).to_vec())
}

/// Frames a (possibly edited) header and data section as a file.
fn frame(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = b"KEENRT\0\0".to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header);
    out.resize((20 + header.len()).div_ceil(64) * 64, 0);
    out.extend_from_slice(data);
    out
}

fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> Result<Model> {
    let (mut json, data) = split(&valid());
    edit(&mut json);
    Model::from_bytes(&frame(&serde_json::to_vec(&json).unwrap(), &data))
}

#[test]
fn reframing_an_unedited_file_loads() {
    edited(|_| {}).unwrap();
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = valid();
    for len in 0..bytes.len() {
        assert!(
            Model::from_bytes(&bytes[..len]).is_err(),
            "truncated at {len}"
        );
    }
    Model::from_bytes(&bytes).unwrap();
}

#[test]
fn bad_magic_and_version_are_named() {
    let mut bytes = valid();
    bytes[0] = b'X';
    assert!(matches!(
        Model::from_bytes(&bytes),
        Err(RuntimeError::BadMagic { .. })
    ));
    let mut bytes = valid();
    bytes[8] = 99;
    let err = Model::from_bytes(&bytes).unwrap_err();
    assert!(
        matches!(err, RuntimeError::UnsupportedVersion { found: 99, .. }),
        "{err}"
    );
}

#[test]
fn huge_header_length_is_rejected_without_allocating() {
    let mut bytes = valid();
    bytes[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(Model::from_bytes(&bytes).is_err());
}

#[test]
fn bad_json_is_an_error() {
    let (_, data) = split(&valid());
    for header in [&b"{"[..], b"null", b"[]", b"{\"inputs\": 3}", b"\xff\xfe"] {
        let err = Model::from_bytes(&frame(header, &data)).unwrap_err();
        assert!(matches!(err, RuntimeError::HeaderJson(_)), "{err}");
    }
}

#[test]
fn out_of_bounds_tensors_are_named() {
    for (field, value) in [
        ("offset", serde_json::json!(1u64 << 40)),
        ("offset", serde_json::json!(u64::MAX - 10)),
        ("offset", serde_json::json!(3)),
        ("length", serde_json::json!(8)),
        ("shape", serde_json::json!([1u64 << 62, 1u64 << 62])),
    ] {
        let err = edited(|j| j["tensors"][0][field] = value.clone()).unwrap_err();
        assert!(err.to_string().contains("c1.w"), "{field}: {err}");
    }
}

#[test]
fn dangling_and_duplicate_names_are_errors() {
    let err = edited(|j| j["nodes"][1]["inputs"][0] = "nowhere".into()).unwrap_err();
    assert!(
        err.to_string().contains("nowhere") && err.to_string().contains("p1"),
        "{err}"
    );
    // Using a value before the op that defines it.
    let err = edited(|j| j["nodes"].as_array_mut().unwrap().swap(0, 1)).unwrap_err();
    assert!(err.to_string().contains("not defined"), "{err}");
    let err = edited(|j| j["outputs"][0] = "ghost".into()).unwrap_err();
    assert!(err.to_string().contains("ghost"), "{err}");
    let err = edited(|j| j["tensors"][1]["name"] = "c1.w".into()).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
}

#[test]
fn insane_attributes_are_errors() {
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("stride", serde_json::json!([0, 1])),
        ("groups", serde_json::json!(3)),
        ("groups", serde_json::json!(0)),
        ("padding", serde_json::json!([5, 5, 5, 5])),
    ];
    for (key, value) in cases {
        let err = edited(|j| j["nodes"][0]["attrs"][key] = value.clone()).unwrap_err();
        assert!(matches!(err, RuntimeError::Op { .. }), "{key}: {err}");
    }
    // A shape that no longer fits: the linear layer's input width changes.
    let err = edited(|j| j["tensors"][4]["shape"] = serde_json::json!([64, 8])).unwrap_err();
    assert!(err.to_string().contains("fc"), "{err}");
    // Unknown op type.
    let err = edited(|j| j["nodes"][0]["op"] = "Teleport".into()).unwrap_err();
    assert!(matches!(err, RuntimeError::HeaderJson(_)), "{err}");
    // Input with a free non-batch axis, and a gigantic declared input.
    assert!(edited(|j| j["inputs"][0]["shape"] = serde_json::json!([null, null, 8, 8])).is_err());
    assert!(edited(
        |j| j["inputs"][0]["shape"] = serde_json::json!([null, 1, 1u64 << 40, 1u64 << 40])
    )
    .is_err());
}

#[test]
fn quantization_parameters_are_checked() {
    let mut g = GraphBuilder::new();
    let x = g.input_batched("x", &[4]);
    let q = g.op(
        "q",
        Op::QuantizeLinear(QuantizeAttrs {
            scale: 0.1,
            zero_point: 0,
            dtype: DType::I8,
        }),
        &[&x],
    );
    let d = g.op(
        "d",
        Op::DequantizeLinear(DequantizeAttrs {
            scale: 0.1,
            zero_point: 0,
        }),
        &[&q],
    );
    g.output(&d);
    let bytes = g.to_bytes().unwrap();
    let (json, data) = split(&bytes);
    for (node, key, value) in [
        (0, "scale", serde_json::json!(0.0)),
        (0, "scale", serde_json::json!(-1.0)),
        (0, "scale", serde_json::json!(1e39)),
        (0, "zero_point", serde_json::json!(200)),
        (1, "zero_point", serde_json::json!(-129)),
    ] {
        let mut j = json.clone();
        j["nodes"][node]["attrs"][key] = value;
        let err = Model::from_bytes(&frame(&serde_json::to_vec(&j).unwrap(), &data)).unwrap_err();
        assert!(
            err.to_string().contains(key) || matches!(err, RuntimeError::HeaderJson(_)),
            "{err}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random byte edits anywhere in a valid file: loading may succeed or fail, never panic.
    #[test]
    fn random_corruption_never_panics(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = valid();
        for (at, value) in edits {
            let i = at % bytes.len();
            bytes[i] = value;
        }
        if let Ok(model) = Model::from_bytes(&bytes) {
            let _ = model.run(&Tensor::zeros(vec![1, 1, 8, 8]));
        }
    }
}
