//! Any bytes offered as a step model: the importer refuses them with an
//! error or returns a network that the real-time kernel can run without
//! panicking and whose outputs and state stay finite on finite inputs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wren::model::kernel::GruKernel;
use wren::model::onnx::import;

fuzz_target!(|data: &[u8]| {
    let Ok(decoded) = import(data) else {
        return;
    };
    let shape = decoded.net.shape();
    let mut kernel = GruKernel::new(&decoded.net);
    let mut state = vec![0.0; shape.state()];
    let mut y = vec![0.0; shape.output];
    for step in 0..3 {
        let x: Vec<f32> = (0..shape.input)
            .map(|i| ((i + step) % 3) as f32 - 1.0)
            .collect();
        kernel.step(&x, &mut state, &mut y);
    }
    // Finite weights and biases (the importer's check) keep a GRU's state
    // within [-1, 1].
    assert!(state.iter().all(|s| s.is_finite() && s.abs() <= 1.0 + 1e-5));
});
