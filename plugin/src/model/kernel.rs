//! Allocation-free GRU kernels for the inference thread.
//!
//! [`GruKernel::new`] allocates every buffer; [`GruKernel::step`] only
//! writes into them. The products walk input rows (`acc += x[j] * W[j, ..]`),
//! four rows at a time, so zero inputs (most of a one-hot token) cost
//! nothing and the inner loops vectorize. With AVX2 and FMA present at run
//! time the same loops are compiled for them.

use super::{GruNet, Matrix, Shape};

enum Weights {
    F32(Vec<f32>),
    Int8 { values: Vec<i8>, scales: Vec<f32> },
}

struct KernelMatrix {
    rows: usize,
    cols: usize,
    weights: Weights,
}

impl KernelMatrix {
    fn new(m: &Matrix) -> Self {
        let weights = match m {
            Matrix::F32 { values, .. } => Weights::F32(values.clone()),
            Matrix::Int8 { values, scales, .. } => Weights::Int8 {
                values: values.clone(),
                scales: scales.clone(),
            },
        };
        KernelMatrix {
            rows: m.rows(),
            cols: m.cols(),
            weights,
        }
    }
}

struct KernelLayer {
    w_input: KernelMatrix,
    w_hidden: KernelMatrix,
    b_input: Vec<f32>,
    b_hidden: Vec<f32>,
}

/// A GRU step model ready for the real-time path.
pub struct GruKernel {
    shape: Shape,
    layers: Vec<KernelLayer>,
    w_out: KernelMatrix,
    b_out: Vec<f32>,
    gates_input: Vec<f32>,
    gates_hidden: Vec<f32>,
    scratch: Vec<f32>,
    fast: bool,
}

impl GruKernel {
    /// Copies the weights and allocates all scratch space. Allocates.
    pub fn new(net: &GruNet) -> Self {
        let shape = net.shape();
        let widest = (3 * shape.hidden).max(shape.output);
        GruKernel {
            shape,
            layers: net
                .layers
                .iter()
                .map(|l| KernelLayer {
                    w_input: KernelMatrix::new(&l.w_input),
                    w_hidden: KernelMatrix::new(&l.w_hidden),
                    b_input: l.b_input.clone(),
                    b_hidden: l.b_hidden.clone(),
                })
                .collect(),
            w_out: KernelMatrix::new(&net.w_out),
            b_out: net.b_out.clone(),
            gates_input: vec![0.0; 3 * shape.hidden],
            gates_hidden: vec![0.0; 3 * shape.hidden],
            scratch: vec![0.0; widest],
            fast: simd::available(),
        }
    }

    /// The sizes of the model.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Runs one step: reads `x` and `state`, writes `y` and the next `state`.
    ///
    /// Real-time safe: does not allocate, lock or block. Panics only if the
    /// slice lengths disagree with [`GruKernel::shape`].
    pub fn step(&mut self, x: &[f32], state: &mut [f32], y: &mut [f32]) {
        let h = self.shape.hidden;
        assert!(x.len() == self.shape.input && state.len() == h * self.shape.layers);
        assert_eq!(y.len(), self.shape.output);
        for (index, layer) in self.layers.iter().enumerate() {
            let (below, rest) = state.split_at_mut(index * h);
            let input: &[f32] = if index == 0 {
                x
            } else {
                &below[(index - 1) * h..]
            };
            let hidden = &mut rest[..h];
            product(
                self.fast,
                &layer.w_input,
                &layer.b_input,
                input,
                &mut self.scratch,
                &mut self.gates_input,
            );
            product(
                self.fast,
                &layer.w_hidden,
                &layer.b_hidden,
                hidden,
                &mut self.scratch,
                &mut self.gates_hidden,
            );
            update_state(&self.gates_input, &self.gates_hidden, hidden);
        }
        let top = &state[(self.shape.layers - 1) * h..];
        product(
            self.fast,
            &self.w_out,
            &self.b_out,
            top,
            &mut self.scratch,
            y,
        );
    }
}

fn update_state(gates_input: &[f32], gates_hidden: &[f32], hidden: &mut [f32]) {
    let h = hidden.len();
    for (i, state) in hidden.iter_mut().enumerate() {
        let r = sigmoid(gates_input[i] + gates_hidden[i]);
        let z = sigmoid(gates_input[h + i] + gates_hidden[h + i]);
        let n = (gates_input[2 * h + i] + r * gates_hidden[2 * h + i]).tanh();
        *state = (1.0 - z) * n + z * *state;
    }
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// `out = bias + x W`.
fn product(
    fast: bool,
    m: &KernelMatrix,
    bias: &[f32],
    x: &[f32],
    scratch: &mut [f32],
    out: &mut [f32],
) {
    debug_assert_eq!(x.len(), m.rows);
    let out = &mut out[..m.cols];
    match &m.weights {
        Weights::F32(values) => {
            out.copy_from_slice(bias);
            simd::accumulate_f32(fast, values, m.cols, x, out);
        }
        Weights::Int8 { values, scales } => {
            let acc = &mut scratch[..m.cols];
            acc.fill(0.0);
            simd::accumulate_i8(fast, values, m.cols, x, acc);
            for ((o, a), (s, b)) in out.iter_mut().zip(acc.iter()).zip(scales.iter().zip(bias)) {
                *o = b + a * s;
            }
        }
    }
}

mod simd {
    //! The inner loops, compiled twice: portable and AVX2 + FMA.

    pub fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    pub fn accumulate_f32(fast: bool, w: &[f32], cols: usize, x: &[f32], acc: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if fast {
            // SAFETY: `fast` is true only when `available()` found AVX2 and FMA.
            unsafe { accumulate_f32_avx2(w, cols, x, acc) };
            return;
        }
        let _ = fast;
        accumulate(w, cols, x, acc, |v| v);
    }

    pub fn accumulate_i8(fast: bool, w: &[i8], cols: usize, x: &[f32], acc: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if fast {
            // SAFETY: `fast` is true only when `available()` found AVX2 and FMA.
            unsafe { accumulate_i8_avx2(w, cols, x, acc) };
            return;
        }
        let _ = fast;
        accumulate(w, cols, x, acc, |v| v as f32);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn accumulate_f32_avx2(w: &[f32], cols: usize, x: &[f32], acc: &mut [f32]) {
        accumulate(w, cols, x, acc, |v| v);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn accumulate_i8_avx2(w: &[i8], cols: usize, x: &[f32], acc: &mut [f32]) {
        accumulate(w, cols, x, acc, |v| v as f32);
    }

    /// `acc += x W` for a row-major `W`, skipping zero inputs.
    #[inline(always)]
    fn accumulate<T: Copy>(w: &[T], cols: usize, x: &[f32], acc: &mut [f32], f: impl Fn(T) -> f32) {
        let acc = &mut acc[..cols];
        let mut rows = x.iter().enumerate().filter(|(_, v)| **v != 0.0);
        while let Some((i0, a0)) = rows.next() {
            let Some((i1, a1)) = rows.next() else {
                let r0 = &w[i0 * cols..][..cols];
                for (o, w0) in acc.iter_mut().zip(r0) {
                    *o += a0 * f(*w0);
                }
                break;
            };
            let (r0, r1) = (&w[i0 * cols..][..cols], &w[i1 * cols..][..cols]);
            match (rows.next(), rows.next()) {
                (Some((i2, a2)), Some((i3, a3))) => {
                    let (r2, r3) = (&w[i2 * cols..][..cols], &w[i3 * cols..][..cols]);
                    for c in 0..cols {
                        acc[c] += a0 * f(r0[c]) + a1 * f(r1[c]) + a2 * f(r2[c]) + a3 * f(r3[c]);
                    }
                }
                (Some((i2, a2)), None) => {
                    let r2 = &w[i2 * cols..][..cols];
                    for c in 0..cols {
                        acc[c] += a0 * f(r0[c]) + a1 * f(r1[c]) + a2 * f(r2[c]);
                    }
                    break;
                }
                _ => {
                    for c in 0..cols {
                        acc[c] += a0 * f(r0[c]) + a1 * f(r1[c]);
                    }
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GruLayer, GruNet};

    /// A small deterministic network for kernel tests.
    pub fn test_net(input: usize, hidden: usize, layers: usize, output: usize) -> GruNet {
        let mut seed = 12345u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.6
        };
        let mut matrix = |rows: usize, cols: usize| Matrix::F32 {
            rows,
            cols,
            values: (0..rows * cols).map(|_| next()).collect(),
        };
        let mut net_layers = Vec::new();
        for i in 0..layers {
            let rows = if i == 0 { input } else { hidden };
            net_layers.push(GruLayer {
                w_input: matrix(rows, 3 * hidden),
                w_hidden: matrix(hidden, 3 * hidden),
                b_input: (0..3 * hidden).map(|i| (i % 5) as f32 * 0.01).collect(),
                b_hidden: (0..3 * hidden).map(|i| (i % 3) as f32 * -0.01).collect(),
            });
        }
        GruNet {
            layers: net_layers,
            w_out: matrix(hidden, output),
            b_out: vec![0.1; output],
        }
    }

    /// Straightforward scalar GRU step in f64, the reference for the kernels.
    fn reference_step(net: &GruNet, x: &[f32], state: &mut [f32], y: &mut [f32]) {
        let h = net.shape().hidden;
        let mut input: Vec<f64> = x.iter().map(|v| *v as f64).collect();
        for (l, layer) in net.layers.iter().enumerate() {
            let prev: Vec<f64> = state[l * h..(l + 1) * h]
                .iter()
                .map(|v| *v as f64)
                .collect();
            let gate = |g: usize, i: usize, src: &[f64], m: &Matrix, b: &[f32]| -> f64 {
                b[g * h + i] as f64
                    + src
                        .iter()
                        .enumerate()
                        .map(|(j, v)| v * m.get(j, g * h + i) as f64)
                        .sum::<f64>()
            };
            let mut next = vec![0.0; h];
            for i in 0..h {
                let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
                let r = sig(gate(0, i, &input, &layer.w_input, &layer.b_input)
                    + gate(0, i, &prev, &layer.w_hidden, &layer.b_hidden));
                let z = sig(gate(1, i, &input, &layer.w_input, &layer.b_input)
                    + gate(1, i, &prev, &layer.w_hidden, &layer.b_hidden));
                let n = (gate(2, i, &input, &layer.w_input, &layer.b_input)
                    + r * gate(2, i, &prev, &layer.w_hidden, &layer.b_hidden))
                .tanh();
                next[i] = (1.0 - z) * n + z * prev[i];
            }
            for i in 0..h {
                state[l * h + i] = next[i] as f32;
            }
            input = next;
        }
        for (o, out) in y.iter_mut().enumerate() {
            let sum: f64 = input
                .iter()
                .enumerate()
                .map(|(j, v)| v * net.w_out.get(j, o) as f64)
                .sum();
            *out = (sum + net.b_out[o] as f64) as f32;
        }
    }

    fn compare(net: &GruNet, tolerance: f32) {
        let shape = net.shape();
        let mut kernel = GruKernel::new(net);
        let mut state_k = vec![0.0; shape.state()];
        let mut state_r = vec![0.0; shape.state()];
        let (mut y_k, mut y_r) = (vec![0.0; shape.output], vec![0.0; shape.output]);
        for t in 0..20 {
            let x: Vec<f32> = (0..shape.input)
                .map(|i| if (i + t) % 7 == 0 { 1.0 } else { 0.0 })
                .collect();
            kernel.step(&x, &mut state_k, &mut y_k);
            reference_step(net, &x, &mut state_r, &mut y_r);
            for (a, b) in y_k.iter().zip(&y_r).chain(state_k.iter().zip(&state_r)) {
                assert!((a - b).abs() <= tolerance, "step {t}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn f32_kernel_matches_scalar_reference() {
        compare(&test_net(13, 24, 2, 9), 1e-5);
        compare(&test_net(80, 33, 1, 51), 1e-5);
    }

    #[test]
    fn int8_kernel_matches_reference_of_dequantized_weights() {
        compare(&test_net(13, 24, 2, 9).quantized(), 1e-5);
    }

    #[test]
    fn portable_and_simd_paths_agree() {
        let net = test_net(17, 40, 2, 11).quantized();
        let (mut a, mut b) = (GruKernel::new(&net), GruKernel::new(&net));
        b.fast = false;
        let shape = net.shape();
        let (mut sa, mut sb) = (vec![0.2; shape.state()], vec![0.2; shape.state()]);
        let (mut ya, mut yb) = (vec![0.0; shape.output], vec![0.0; shape.output]);
        let x: Vec<f32> = (0..shape.input).map(|i| (i as f32 * 0.37).sin()).collect();
        a.step(&x, &mut sa, &mut ya);
        b.step(&x, &mut sb, &mut yb);
        for (p, q) in ya.iter().zip(&yb) {
            assert!((p - q).abs() < 1e-5);
        }
    }
}
