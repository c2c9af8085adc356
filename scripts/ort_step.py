#!/usr/bin/env python3
"""Times one step of a Wren step model under ONNX Runtime, on one thread.

`cargo xtask report` calls this once per model. The inputs come from a file
of raw little-endian f32 (steps x input width); the state feeds back, as in
the plugin (`h_next` of step i is `h` of step i + 1), starting from zeros.
Each `session.run` is timed with `time.perf_counter_ns`. Percentiles use the
same rule as the Rust side: the sorted sample at round((n - 1) * q).

Commands (each writes one JSON object to --json):
  version             the ONNX Runtime version, or why it cannot be imported
  step MODEL          the model as stored; with --quantize-dynamic also
                      `quantize_dynamic(MODEL, weight_type=QInt8)` of it
  overhead            an Identity model of the input width: the cost of a
                      `session.run` call that computes nothing
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WARMUP = 100


def percentile(sorted_us, q):
    return float(sorted_us[int(round((len(sorted_us) - 1) * q))])


def summary(times_ns):
    us = np.sort(np.asarray(times_ns, dtype=np.float64) / 1000.0)
    return {
        "median_us": percentile(us, 0.5),
        "p99_us": percentile(us, 0.99),
        "p999_us": percentile(us, 0.999),
    }


def session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )


def run_sequence(sess, xs, state_width):
    """Runs the sequence from a zero state: (times in ns, outputs per step)."""
    inputs = [i.name for i in sess.get_inputs()]
    outputs = [o.name for o in sess.get_outputs()]
    x_name = "x" if "x" in inputs else inputs[0]
    h_name = "h" if "h" in inputs else inputs[1]
    names = ["y", "h_next"] if {"y", "h_next"} <= set(outputs) else outputs[:2]
    zero = np.zeros((1, state_width), dtype=np.float32)

    h = zero
    for i in range(min(WARMUP, len(xs))):
        _, h = sess.run(names, {x_name: xs[i], h_name: h})

    h = zero
    times = np.empty(len(xs), dtype=np.int64)
    steps = []
    for i in range(len(xs)):
        feed = {x_name: xs[i], h_name: h}
        start = time.perf_counter_ns()
        y, h = sess.run(names, feed)
        times[i] = time.perf_counter_ns() - start
        steps.append(np.concatenate([y.reshape(-1), h.reshape(-1)]))
    return times, np.stack(steps)


def measure(path, xs, state_width, reference):
    times, outputs = run_sequence(session(path), xs, state_width)
    result = summary(times)
    if reference is not None and reference.shape == outputs.shape:
        result["max_abs_diff"] = float(np.max(np.abs(outputs - reference)))
    elif reference is not None:
        result["error"] = f"outputs {outputs.shape} against reference {reference.shape}"
    return result


def step(args):
    xs = np.fromfile(args.inputs, dtype="<f4").reshape(-1, 1, args.input_width)
    reference = None
    if args.reference:
        width = args.output_width + args.state_width
        reference = np.fromfile(args.reference, dtype="<f4").reshape(-1, width)
    result = {"model": measure(args.model, xs, args.state_width, reference)}
    if args.quantize_dynamic:
        try:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            with tempfile.TemporaryDirectory() as folder:
                quantized = Path(folder) / "dynamic-int8.onnx"
                quantize_dynamic(str(args.model), str(quantized), weight_type=QuantType.QInt8)
                part = measure(quantized, xs, args.state_width, reference)
                part["file_bytes"] = quantized.stat().st_size
                result["dynamic_int8"] = part
        except Exception as e:  # reported per model, the timing above still counts
            result["dynamic_int8"] = {"error": f"{type(e).__name__}: {e}"}
    return result


def overhead(args):
    import onnx
    from onnx import TensorProto, helper

    shape = [1, args.input_width]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = np.zeros(shape, dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "identity.onnx"
        onnx.save(model, str(path))
        sess = session(path)
        for _ in range(WARMUP):
            sess.run(["y"], {"x": x})
        times = np.empty(args.steps, dtype=np.int64)
        for i in range(args.steps):
            start = time.perf_counter_ns()
            sess.run(["y"], {"x": x})
            times[i] = time.perf_counter_ns() - start
    return summary(times)


def version(_args):
    import onnxruntime as ort

    try:
        import onnx  # noqa: F401  quantize_dynamic and the overhead model need it

        has_onnx = True
    except ImportError:
        has_onnx = False
    return {"onnxruntime": ort.__version__, "onnx": has_onnx}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["version", "step", "overhead"])
    parser.add_argument("model", nargs="?", type=Path)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--inputs", type=Path)
    parser.add_argument("--reference", type=Path)
    parser.add_argument("--input-width", type=int)
    parser.add_argument("--state-width", type=int)
    parser.add_argument("--output-width", type=int)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--quantize-dynamic", action="store_true")
    args = parser.parse_args()
    try:
        result = {"version": version, "step": step, "overhead": overhead}[args.command](args)
    except Exception as e:
        result = {"error": f"{type(e).__name__}: {e}"}
        args.json.write_text(json.dumps(result))
        print(result["error"], file=sys.stderr)
        sys.exit(1)
    args.json.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
