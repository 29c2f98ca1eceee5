//! The compiled graph: every name resolved to a slot, every op checked and built into a
//! kernel, shapes inferred end to end, and each value freed right after its last use.

use std::collections::HashMap;

use crate::error::{OpError, Result, RuntimeError};
use crate::format::Header;
use crate::ops::{Kernel, NodeInputs};
use crate::tensor::{checked_numel, DType, Value, ValueInfo};

/// Largest number of elements any value may have (8 GiB of f32): a file that asks for more is
/// rejected at load time rather than trusted.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// Where a value lives while the graph runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// A stored tensor, by index into `Plan::consts`.
    Const(usize),
    /// A computed value or graph input, by index into the run's environment.
    Dyn(usize),
}

#[derive(Debug)]
struct Step {
    name: String,
    op: &'static str,
    kernel: Box<dyn Kernel>,
    inputs: Vec<Slot>,
    output: usize,
    /// Dynamic slots whose last reader is this step.
    free_after: Vec<usize>,
}

/// A validated, ready-to-run graph.
#[derive(Debug)]
pub(crate) struct Plan {
    consts: Vec<Value>,
    steps: Vec<Step>,
    dyn_slots: usize,
    /// Declared input shapes (`None` = any batch), one dynamic slot each (slots 0..n).
    inputs: Vec<Vec<Option<usize>>>,
    outputs: Vec<usize>,
}

fn graph_err(message: String) -> RuntimeError {
    RuntimeError::Graph(message)
}

fn op_err(name: &str, op: &str, e: OpError) -> RuntimeError {
    RuntimeError::Op {
        node: name.to_string(),
        op: op.to_string(),
        reason: e.0,
    }
}

fn check_size(name: &str, op: &str, info: &ValueInfo) -> Result<()> {
    match checked_numel(&info.shape) {
        Some(n) if n <= MAX_ELEMENTS => Ok(()),
        _ => Err(op_err(
            name,
            op,
            OpError::new(format!(
                "output shape {:?} exceeds {MAX_ELEMENTS} elements",
                info.shape
            )),
        )),
    }
}

impl Plan {
    /// Validates `header` against `tensors` (its decoded stored tensors) and compiles it.
    pub fn compile(header: &Header, tensors: Vec<Value>) -> Result<Plan> {
        let mut names: HashMap<&str, Slot> = HashMap::new();
        let mut infos: Vec<ValueInfo> = Vec::new();
        let mut inputs = Vec::new();
        if header.inputs.is_empty() {
            return Err(graph_err("the graph declares no inputs".into()));
        }
        for input in &header.inputs {
            let shape = check_input(input.name.as_str(), input.dtype, &input.shape)?;
            if names.insert(&input.name, Slot::Dyn(infos.len())).is_some() {
                return Err(graph_err(format!(
                    "input '{}' is declared twice",
                    input.name
                )));
            }
            infos.push(ValueInfo::new(input.dtype, shape));
            inputs.push(input.shape.clone());
        }
        for (i, def) in header.tensors.iter().enumerate() {
            if names.insert(&def.name, Slot::Const(i)).is_some() {
                return Err(graph_err(format!(
                    "tensor '{}' has the name of another value",
                    def.name
                )));
            }
        }
        let const_infos: Vec<ValueInfo> = tensors.iter().map(Value::info).collect();
        let mut steps: Vec<Step> = Vec::with_capacity(header.nodes.len());
        for node in &header.nodes {
            let op = node.op.type_name();
            let [output] = node.outputs.as_slice() else {
                return Err(op_err(
                    &node.name,
                    op,
                    OpError::new(format!(
                        "must have exactly one output, has {}",
                        node.outputs.len()
                    )),
                ));
            };
            let mut slots = Vec::with_capacity(node.inputs.len());
            for name in &node.inputs {
                match names.get(name.as_str()) {
                    Some(&slot) => slots.push(slot),
                    None => {
                        return Err(op_err(
                            &node.name,
                            op,
                            OpError::new(format!("input '{name}' is not defined before this op")),
                        ))
                    }
                }
            }
            let node_inputs = NodeInputs {
                infos: slots
                    .iter()
                    .map(|s| match *s {
                        Slot::Const(i) => &const_infos[i],
                        Slot::Dyn(i) => &infos[i],
                    })
                    .collect(),
                consts: slots
                    .iter()
                    .map(|s| match *s {
                        Slot::Const(i) => Some(&tensors[i]),
                        Slot::Dyn(_) => None,
                    })
                    .collect(),
            };
            let kernel = node
                .op
                .build(&node_inputs)
                .map_err(|e| op_err(&node.name, op, e))?;
            let info = kernel
                .infer(&node_inputs.infos)
                .map_err(|e| op_err(&node.name, op, e))?;
            check_size(&node.name, op, &info)?;
            if names.insert(output, Slot::Dyn(infos.len())).is_some() {
                return Err(op_err(
                    &node.name,
                    op,
                    OpError::new(format!("output '{output}' redefines an existing value")),
                ));
            }
            steps.push(Step {
                name: node.name.clone(),
                op,
                kernel,
                inputs: slots,
                output: infos.len(),
                free_after: Vec::new(),
            });
            infos.push(info);
        }
        if header.outputs.is_empty() {
            return Err(graph_err("the graph declares no outputs".into()));
        }
        let mut outputs = Vec::new();
        for name in &header.outputs {
            match names.get(name.as_str()) {
                Some(&Slot::Dyn(i)) if infos[i].dtype == DType::F32 => outputs.push(i),
                Some(&Slot::Dyn(i)) => {
                    return Err(graph_err(format!(
                        "output '{name}' is {}; outputs must be f32 (end with DequantizeLinear)",
                        infos[i].dtype
                    )))
                }
                Some(&Slot::Const(_)) => {
                    return Err(graph_err(format!("output '{name}' is a stored tensor")))
                }
                None => return Err(graph_err(format!("output '{name}' is never computed"))),
            }
        }
        schedule_frees(&mut steps, &outputs, infos.len());
        Ok(Plan {
            consts: tensors,
            steps,
            dyn_slots: infos.len(),
            inputs,
            outputs,
        })
    }

    /// Runs the graph on `inputs` (already checked against the declared inputs).
    pub fn run(&self, inputs: Vec<Value>) -> Result<Vec<Value>> {
        self.infer(&inputs)?;
        let mut env: Vec<Option<Value>> = Vec::with_capacity(self.dyn_slots);
        env.extend(inputs.into_iter().map(Some));
        env.resize_with(self.dyn_slots, || None);
        let profile = profiling();
        for step in &self.steps {
            let args = self.args(step, &env)?;
            let start = profile.then(std::time::Instant::now);
            let value = step
                .kernel
                .run(&args)
                .map_err(|e| op_err(&step.name, step.op, e))?;
            if let Some(start) = start {
                eprintln!(
                    "keen-runtime: {:>9.3} ms  {} ({}) -> {:?} {}",
                    start.elapsed().as_secs_f64() * 1e3,
                    step.name,
                    step.op,
                    value.shape,
                    value.dtype()
                );
            }
            env[step.output] = Some(value);
            for &slot in &step.free_after {
                env[slot] = None;
            }
        }
        self.outputs
            .iter()
            .map(|&i| {
                env[i]
                    .take()
                    .ok_or_else(|| graph_err("an output was freed before the end".into()))
            })
            .collect()
    }

    fn args<'a>(&'a self, step: &Step, env: &'a [Option<Value>]) -> Result<Vec<&'a Value>> {
        step.inputs
            .iter()
            .map(|s| match *s {
                Slot::Const(i) => Ok(&self.consts[i]),
                Slot::Dyn(i) => env[i].as_ref().ok_or_else(|| {
                    graph_err(format!("op '{}' reads a value that is gone", step.name))
                }),
            })
            .collect()
    }

    /// Shape inference for these concrete inputs: every op checks its input shapes before any
    /// work starts, so a bad batch fails fast with the op's name.
    fn infer(&self, inputs: &[Value]) -> Result<()> {
        let mut infos: Vec<Option<ValueInfo>> = vec![None; self.dyn_slots];
        for (i, v) in inputs.iter().enumerate() {
            infos[i] = Some(v.info());
        }
        let const_infos: Vec<ValueInfo> = self.consts.iter().map(Value::info).collect();
        for step in &self.steps {
            let args = step
                .inputs
                .iter()
                .map(|s| match *s {
                    Slot::Const(i) => Some(&const_infos[i]),
                    Slot::Dyn(i) => infos[i].as_ref(),
                })
                .collect::<Option<Vec<&ValueInfo>>>()
                .ok_or_else(|| graph_err(format!("op '{}' reads an undefined value", step.name)))?;
            let info = step
                .kernel
                .infer(&args)
                .map_err(|e| op_err(&step.name, step.op, e))?;
            check_size(&step.name, step.op, &info)?;
            infos[step.output] = Some(info);
        }
        Ok(())
    }

    /// The declared input shapes.
    pub fn input_shapes(&self) -> &[Vec<Option<usize>>] {
        &self.inputs
    }
}

/// True when `KEEN_RUNTIME_PROFILE` is set: every op's time is printed to stderr.
fn profiling() -> bool {
    static PROFILE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PROFILE.get_or_init(|| std::env::var_os("KEEN_RUNTIME_PROFILE").is_some())
}

/// Checks a declared input and returns its shape with batch 1 for load-time inference.
fn check_input(name: &str, dtype: DType, shape: &[Option<usize>]) -> Result<Vec<usize>> {
    if dtype != DType::F32 {
        return Err(graph_err(format!("input '{name}' must be f32, is {dtype}")));
    }
    if shape.is_empty() {
        return Err(graph_err(format!("input '{name}' has no axes")));
    }
    let mut dims = Vec::with_capacity(shape.len());
    for (i, d) in shape.iter().enumerate() {
        match d {
            Some(0) => return Err(graph_err(format!("input '{name}' has an empty axis {i}"))),
            Some(v) => dims.push(*v),
            None if i == 0 => dims.push(1),
            None => {
                return Err(graph_err(format!(
                    "input '{name}': only the batch axis may be unspecified, axis {i} is"
                )))
            }
        }
    }
    match checked_numel(&dims) {
        Some(n) if n <= MAX_ELEMENTS => Ok(dims),
        _ => Err(graph_err(format!(
            "input '{name}' shape {shape:?} is too large"
        ))),
    }
}

/// Records in each step the values nobody reads afterwards (graph outputs excepted).
fn schedule_frees(steps: &mut [Step], outputs: &[usize], slots: usize) {
    let mut last_use: Vec<Option<usize>> = vec![None; slots];
    for (i, step) in steps.iter().enumerate() {
        for s in &step.inputs {
            if let Slot::Dyn(d) = *s {
                last_use[d] = Some(i);
            }
        }
    }
    for &o in outputs {
        last_use[o] = None;
    }
    for (slot, last) in last_use.into_iter().enumerate() {
        if let Some(i) = last {
            steps[i].free_after.push(slot);
        }
    }
}
