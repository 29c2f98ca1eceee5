//! Bad input and graphs with no ONNX translation yet give errors that name the node and say why;
//! files are written atomically.

use keen_onnx::{OnnxError, OnnxModel};
use keen_runtime::*;

fn attention_graph() -> GraphBuilder {
    let mut g = GraphBuilder::new();
    let x = g.input_batched("tokens", &[4, 24]);
    let y = g.op("attn", Op::Attention(AttentionAttrs { heads: 2 }), &[&x]);
    g.output(&y);
    g
}

#[test]
fn attention_is_reported_as_unsupported_with_its_node() {
    let bytes = attention_graph().to_bytes().unwrap();
    match OnnxModel::from_keenrt_bytes(&bytes) {
        Err(OnnxError::Unsupported { node, op, reason }) => {
            assert_eq!(node, "attn");
            assert_eq!(op, "Attention");
            assert!(reason.contains("attention"), "{reason}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn a_class_token_concatenated_along_the_batch_is_unsupported() {
    let mut g = GraphBuilder::new();
    let x = g.input_batched("tokens", &[4, 8]);
    let cls = g.tensor_f32("cls", vec![1, 1, 8], vec![0.5; 8]).unwrap();
    let y = g.op("cat", Op::Concat(ConcatAttrs { axis: 1 }), &[&cls, &x]);
    g.output(&y);
    let err = OnnxModel::from_keenrt_bytes(&g.to_bytes().unwrap()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("'cat'") && message.contains("'cls'"),
        "{message}"
    );
}

#[test]
fn flattening_middle_axes_is_unsupported() {
    let mut g = GraphBuilder::new();
    let x = g.input_batched("x", &[2, 3, 4]);
    let y = g.op(
        "mid",
        Op::Flatten(FlattenAttrs {
            start_dim: 1,
            end_dim: 2,
        }),
        &[&x],
    );
    g.output(&y);
    let err = OnnxModel::from_keenrt_bytes(&g.to_bytes().unwrap()).unwrap_err();
    assert!(
        matches!(err, OnnxError::Unsupported { ref node, .. } if node == "mid"),
        "{err}"
    );
}

#[test]
fn bytes_that_are_not_a_keen_runtime_model_are_rejected() {
    let err = OnnxModel::from_keenrt_bytes(b"\x08\x07not a keen model").unwrap_err();
    assert!(matches!(err, OnnxError::Runtime(_)), "{err}");
    let err = OnnxModel::from_keenrt_file("/nonexistent/model.keenrt").unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/model.keenrt"),
        "{err}"
    );
}

#[test]
fn save_is_atomic_and_names_the_path_on_failure() {
    let mut g = GraphBuilder::new();
    let x = g.input_batched("x", &[4]);
    let w = g.tensor_f32("w", vec![2, 4], vec![0.25; 8]).unwrap();
    let y = g.op("fc", Op::Linear(LinearAttrs::default()), &[&x, &w]);
    g.output(&y);
    let onnx = OnnxModel::from_keenrt_bytes(&g.to_bytes().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    let written = onnx.save(&path).unwrap();
    assert_eq!(written, std::fs::metadata(&path).unwrap().len());
    assert_eq!(std::fs::read(&path).unwrap(), onnx.to_bytes());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary file left behind");
    let bad = dir.path().join("missing").join("m.onnx");
    let err = onnx.save(&bad).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}
