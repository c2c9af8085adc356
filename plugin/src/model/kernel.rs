//! Allocation-free GRU kernels for the inference thread.
//!
//! [`GruKernel::new`] allocates every buffer; [`GruKernel::step`] only
//! writes into them.
//!
//! - f32 products walk input rows (`acc += x[j] * W[j, ..]`), four rows at a
//!   time, so zero inputs (most of a one-hot token) cost nothing and the
//!   inner loops vectorize; with AVX2 and FMA present at run time the same
//!   loops are compiled for them.
//! - int8 products follow ONNX's `DynamicQuantizeLinear` and
//!   `MatMulInteger`: the input is quantized to u8 per call, multiplied with
//!   the int8 weights in i32 and scaled back. Weights are packed so that
//!   AVX-512 VNNI's `vpdpbusd` sums four u8 x i8 products per lane; without
//!   it a portable loop computes the same integers.
//! - A factorized matrix `W = L R` is two products through a buffer of its
//!   rank's width.

use super::{GruNet, Matrix, Shape};

/// The instruction sets the kernels can use, found at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust loops, on every CPU.
    Portable,
    /// AVX2 and FMA for f32; int8 on the portable loop.
    Avx2,
    /// AVX2 and FMA for f32; AVX-512 VNNI for int8.
    Avx512Vnni,
}

impl Isa {
    /// The best instruction set this CPU has.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            let vnni =
                is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni");
            match (avx2, vnni) {
                (true, true) => Isa::Avx512Vnni,
                (true, false) => Isa::Avx2,
                _ => Isa::Portable,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Isa::Portable
        }
    }
}

/// Output columns per packed tile of an int8 matrix: four 16-lane blocks.
const TILE: usize = 64;

/// An int8 matrix packed for `vpdpbusd`, with the buffers of one product.
///
/// Layout: tiles of [`TILE`] columns; within a tile, groups of four input
/// rows; within a group, for each column its four weights side by side.
/// Rows and columns are padded with zero weights.
struct PackedInt8 {
    rows: usize,
    cols: usize,
    groups: usize,
    tiles: usize,
    packed: Vec<i8>,
    column_sums: Vec<i32>,
    scales: Vec<f32>,
    input: Vec<u8>,
    sums: Vec<i32>,
}

impl PackedInt8 {
    fn new(rows: usize, cols: usize, values: &[i8], scales: &[f32]) -> Self {
        let groups = rows.div_ceil(4);
        let tiles = cols.div_ceil(TILE);
        let mut packed = vec![0i8; tiles * groups * TILE * 4];
        let mut column_sums = vec![0i32; tiles * TILE];
        for (r, row) in values.chunks_exact(cols).enumerate() {
            for (c, w) in row.iter().enumerate() {
                let (tile, lane) = (c / TILE, c % TILE);
                packed[((tile * groups + r / 4) * TILE + lane) * 4 + r % 4] = *w;
                column_sums[c] += *w as i32;
            }
        }
        PackedInt8 {
            rows,
            cols,
            groups,
            tiles,
            packed,
            column_sums,
            scales: scales.to_vec(),
            input: vec![0; groups * 4],
            sums: vec![0; tiles * TILE],
        }
    }

    /// `out = x W (+ bias)` in ONNX's dynamic-quantization arithmetic.
    fn product(&mut self, isa: Isa, x: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
        let out = &mut out[..self.cols];
        let Some((scale, zero_point)) = quantize_input(x, &mut self.input[..self.rows]) else {
            // An all-zero input: every product is zero.
            match bias {
                Some(b) => out.copy_from_slice(b),
                None => out.fill(0.0),
            }
            return;
        };
        self.sums.fill(0);
        simd::int8_sums(
            isa,
            &self.packed,
            self.groups,
            self.tiles,
            &self.input,
            &mut self.sums,
        );
        for (c, o) in out.iter_mut().enumerate() {
            let exact = self.sums[c] - zero_point as i32 * self.column_sums[c];
            let value = exact as f32 * scale * self.scales[c];
            *o = match bias {
                Some(b) => value + b[c],
                None => value,
            };
        }
    }
}

/// ONNX `DynamicQuantizeLinear`: writes `q = saturate(round(x / s) + zp)`
/// and returns `(s, zp)`, or `None` when `x` is all zeros.
///
/// The range always includes zero; rounding is half to even.
pub fn quantize_input(x: &[f32], q: &mut [u8]) -> Option<(f32, u8)> {
    let (min, max) = x
        .iter()
        .fold((0f32, 0f32), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let scale = (max - min) / 255.0;
    if scale == 0.0 || !scale.is_finite() {
        q.fill(0);
        return None;
    }
    let zero_point = (-min / scale).round_ties_even().clamp(0.0, 255.0);
    for (q, v) in q.iter_mut().zip(x) {
        *q = ((v / scale).round_ties_even() + zero_point).clamp(0.0, 255.0) as u8;
    }
    Some((scale, zero_point as u8))
}

enum KernelMatrix {
    F32 {
        rows: usize,
        cols: usize,
        values: Vec<f32>,
    },
    Int8(PackedInt8),
    LowRank {
        left: Box<KernelMatrix>,
        right: Box<KernelMatrix>,
        inner: Vec<f32>,
    },
}

impl KernelMatrix {
    fn new(m: &Matrix) -> Self {
        match m {
            Matrix::F32 { rows, cols, values } => KernelMatrix::F32 {
                rows: *rows,
                cols: *cols,
                values: values.clone(),
            },
            Matrix::Int8 {
                rows,
                cols,
                values,
                scales,
            } => KernelMatrix::Int8(PackedInt8::new(*rows, *cols, values, scales)),
            Matrix::LowRank { left, right } => KernelMatrix::LowRank {
                left: Box::new(KernelMatrix::new(left)),
                right: Box::new(KernelMatrix::new(right)),
                inner: vec![0.0; left.cols()],
            },
        }
    }

    /// `out = x W (+ bias)`. Real-time safe.
    fn product(&mut self, isa: Isa, x: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
        match self {
            KernelMatrix::F32 { rows, cols, values } => {
                debug_assert_eq!(x.len(), *rows);
                let out = &mut out[..*cols];
                match bias {
                    Some(b) => out.copy_from_slice(b),
                    None => out.fill(0.0),
                }
                simd::accumulate_f32(isa, values, *cols, x, out);
            }
            KernelMatrix::Int8(packed) => packed.product(isa, x, bias, out),
            KernelMatrix::LowRank { left, right, inner } => {
                left.product(isa, x, None, inner);
                right.product(isa, inner, bias, out);
            }
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
    isa: Isa,
}

impl GruKernel {
    /// Copies and packs the weights and allocates all scratch space. Allocates.
    pub fn new(net: &GruNet) -> Self {
        Self::with_isa(net, Isa::detect())
    }

    /// The same, on a chosen instruction set (at most what [`Isa::detect`]
    /// finds: a better one than the CPU has would fault).
    pub fn with_isa(net: &GruNet, isa: Isa) -> Self {
        let shape = net.shape();
        let detected = Isa::detect();
        let isa = match (isa, detected) {
            (Isa::Avx512Vnni, Isa::Avx2) => Isa::Avx2,
            (_, Isa::Portable) => Isa::Portable,
            _ => isa,
        };
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
            isa,
        }
    }

    /// The sizes of the model.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The instruction set the kernel runs on.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Runs one step: reads `x` and `state`, writes `y` and the next `state`.
    ///
    /// Real-time safe: does not allocate, lock or block. Panics only if the
    /// slice lengths disagree with [`GruKernel::shape`].
    pub fn step(&mut self, x: &[f32], state: &mut [f32], y: &mut [f32]) {
        let h = self.shape.hidden;
        assert!(x.len() == self.shape.input && state.len() == h * self.shape.layers);
        assert_eq!(y.len(), self.shape.output);
        let isa = self.isa;
        for (index, layer) in self.layers.iter_mut().enumerate() {
            let (below, rest) = state.split_at_mut(index * h);
            let input: &[f32] = if index == 0 {
                x
            } else {
                &below[(index - 1) * h..]
            };
            let hidden = &mut rest[..h];
            layer
                .w_input
                .product(isa, input, Some(&layer.b_input), &mut self.gates_input);
            layer
                .w_hidden
                .product(isa, hidden, Some(&layer.b_hidden), &mut self.gates_hidden);
            update_state(isa, &self.gates_input, &self.gates_hidden, hidden);
        }
        let top = &state[(self.shape.layers - 1) * h..];
        self.w_out.product(isa, top, Some(&self.b_out), y);
    }
}

/// The GRU update from the two gate products; vectorized for the CPU.
fn update_state(isa: Isa, gates_input: &[f32], gates_hidden: &[f32], hidden: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Portable {
        // SAFETY: every ISA but `Portable` was detected with AVX2 and FMA.
        unsafe { update_state_avx2(gates_input, gates_hidden, hidden) };
        return;
    }
    let _ = isa;
    update_state_lanes(gates_input, gates_hidden, hidden);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn update_state_avx2(gates_input: &[f32], gates_hidden: &[f32], hidden: &mut [f32]) {
    update_state_lanes(gates_input, gates_hidden, hidden);
}

#[inline(always)]
fn update_state_lanes(gates_input: &[f32], gates_hidden: &[f32], hidden: &mut [f32]) {
    let h = hidden.len();
    let (ri, rest) = gates_input[..3 * h].split_at(h);
    let (zi, ni) = rest.split_at(h);
    let (rh, rest) = gates_hidden[..3 * h].split_at(h);
    let (zh, nh) = rest.split_at(h);
    for i in 0..h {
        let r = sigmoid(ri[i] + rh[i]);
        let z = sigmoid(zi[i] + zh[i]);
        let n = tanh(ni[i] + r * nh[i]);
        hidden[i] = (1.0 - z) * n + z * hidden[i];
    }
}

/// `e^x` without branches, so that loops over it vectorize: Cody-Waite
/// range reduction and a degree-6 polynomial, relative error about 2e-7.
/// Saturates to 0 below -87 and to `e^88` above 88.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E).round();
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let p = p * r * r + r + 1.0;
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[inline(always)]
fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + exp(-v))
}

#[inline(always)]
fn tanh(v: f32) -> f32 {
    2.0 / (1.0 + exp(-2.0 * v)) - 1.0
}

mod simd {
    //! The inner loops: portable, AVX2 + FMA (f32) and AVX-512 VNNI (int8).

    use super::{Isa, TILE};

    pub fn accumulate_f32(isa: Isa, w: &[f32], cols: usize, x: &[f32], acc: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        match isa {
            // SAFETY: `Avx512Vnni` is chosen only when `Isa::detect` found AVX-512F.
            Isa::Avx512Vnni => return unsafe { accumulate_f32_avx512(w, cols, x, acc) },
            // SAFETY: `Avx2` is chosen only when `Isa::detect` found AVX2 and FMA.
            Isa::Avx2 => return unsafe { accumulate_f32_avx2(w, cols, x, acc) },
            Isa::Portable => {}
        }
        let _ = isa;
        accumulate(w, cols, x, acc);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn accumulate_f32_avx512(w: &[f32], cols: usize, x: &[f32], acc: &mut [f32]) {
        accumulate(w, cols, x, acc);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn accumulate_f32_avx2(w: &[f32], cols: usize, x: &[f32], acc: &mut [f32]) {
        accumulate(w, cols, x, acc);
    }

    /// `acc += x W` for a row-major `W`, skipping zero inputs.
    #[inline(always)]
    fn accumulate(w: &[f32], cols: usize, x: &[f32], acc: &mut [f32]) {
        let acc = &mut acc[..cols];
        let mut rows = x.iter().enumerate().filter(|(_, v)| **v != 0.0);
        while let Some((i0, a0)) = rows.next() {
            let Some((i1, a1)) = rows.next() else {
                let r0 = &w[i0 * cols..][..cols];
                for (o, w0) in acc.iter_mut().zip(r0) {
                    *o += a0 * w0;
                }
                break;
            };
            let (r0, r1) = (&w[i0 * cols..][..cols], &w[i1 * cols..][..cols]);
            match (rows.next(), rows.next()) {
                (Some((i2, a2)), Some((i3, a3))) => {
                    let (r2, r3) = (&w[i2 * cols..][..cols], &w[i3 * cols..][..cols]);
                    for c in 0..cols {
                        acc[c] += a0 * r0[c] + a1 * r1[c] + a2 * r2[c] + a3 * r3[c];
                    }
                }
                (Some((i2, a2)), None) => {
                    let r2 = &w[i2 * cols..][..cols];
                    for c in 0..cols {
                        acc[c] += a0 * r0[c] + a1 * r1[c] + a2 * r2[c];
                    }
                    break;
                }
                _ => {
                    for c in 0..cols {
                        acc[c] += a0 * r0[c] + a1 * r1[c];
                    }
                    break;
                }
            }
        }
    }

    /// `sums[c] += sum_j q[j] * w[j, c]` over a packed int8 matrix.
    ///
    /// Groups of four inputs that are all zero are skipped: they add nothing.
    pub fn int8_sums(
        isa: Isa,
        packed: &[i8],
        groups: usize,
        tiles: usize,
        q: &[u8],
        sums: &mut [i32],
    ) {
        assert!(packed.len() >= tiles * groups * TILE * 4);
        assert!(q.len() >= groups * 4 && sums.len() >= tiles * TILE);
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512Vnni {
            // SAFETY: `Avx512Vnni` is only chosen when `Isa::detect` found
            // AVX-512F and AVX-512 VNNI.
            unsafe { int8_sums_vnni(packed, groups, tiles, q, sums) };
            return;
        }
        let _ = isa;
        for tile in 0..tiles {
            let acc = &mut sums[tile * TILE..][..TILE];
            for g in 0..groups {
                let inputs = &q[g * 4..][..4];
                if inputs == [0; 4] {
                    continue;
                }
                let block = &packed[(tile * groups + g) * TILE * 4..][..TILE * 4];
                for (a, w) in acc.iter_mut().zip(block.chunks_exact(4)) {
                    *a += inputs
                        .iter()
                        .zip(w)
                        .map(|(q, w)| *q as i32 * *w as i32)
                        .sum::<i32>();
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vnni")]
    fn int8_sums_vnni(packed: &[i8], groups: usize, tiles: usize, q: &[u8], sums: &mut [i32]) {
        use std::arch::x86_64::*;
        for tile in 0..tiles {
            let weights = &packed[tile * groups * TILE * 4..][..groups * TILE * 4];
            let mut acc = [_mm512_setzero_si512(); 4];
            for (inputs, block) in q.chunks_exact(4).zip(weights.chunks_exact(TILE * 4)) {
                let inputs = u32::from_le_bytes([inputs[0], inputs[1], inputs[2], inputs[3]]);
                if inputs == 0 {
                    continue;
                }
                let broadcast = _mm512_set1_epi32(inputs as i32);
                for (a, w) in acc.iter_mut().zip(block.chunks_exact(64)) {
                    // SAFETY: `w` is a slice of exactly 64 bytes.
                    let w = unsafe { _mm512_loadu_si512(w.as_ptr() as *const _) };
                    *a = _mm512_dpbusd_epi32(*a, broadcast, w);
                }
            }
            let out = &mut sums[tile * TILE..][..TILE];
            for (a, o) in acc.iter().zip(out.chunks_exact_mut(16)) {
                // SAFETY: `o` is a slice of exactly 16 i32 values (64 bytes).
                let previous = unsafe { _mm512_loadu_si512(o.as_ptr() as *const _) };
                let total = _mm512_add_epi32(previous, *a);
                // SAFETY: as above.
                unsafe { _mm512_storeu_si512(o.as_mut_ptr() as *mut _, total) };
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

    /// Replaces every matrix by a rank-`rank` product of thin factors.
    fn factorized(net: &GruNet, rank: usize) -> GruNet {
        let mut net = net.clone();
        for (n, m) in net.matrices_mut().enumerate() {
            let (rows, cols) = (m.rows(), m.cols());
            let values = |len: usize, salt: usize| -> Vec<f32> {
                (0..len)
                    .map(|i| (((i * 29 + salt * 7) % 19) as f32 - 9.0) * 0.03)
                    .collect()
            };
            *m = Matrix::LowRank {
                left: Box::new(Matrix::F32 {
                    rows,
                    cols: rank,
                    values: values(rows * rank, n),
                }),
                right: Box::new(Matrix::F32 {
                    rows: rank,
                    cols,
                    values: values(rank * cols, n + 1),
                }),
            };
        }
        net
    }

    #[test]
    fn factorized_kernel_matches_reference_of_the_product() {
        compare(&factorized(&test_net(13, 24, 2, 9), 5), 1e-5);
    }

    /// `x W` as ONNX's dynamic quantization defines it, in exact integers.
    fn reference_int8_product(m: &Matrix, x: &[f32]) -> Vec<f32> {
        let Matrix::Int8 {
            rows,
            cols,
            values,
            scales,
        } = m
        else {
            panic!("not int8")
        };
        let mut q = vec![0u8; *rows];
        let Some((scale, zero_point)) = quantize_input(x, &mut q) else {
            return vec![0.0; *cols];
        };
        (0..*cols)
            .map(|c| {
                let sum: i64 = (0..*rows)
                    .map(|r| (q[r] as i64 - zero_point as i64) * values[r * cols + c] as i64)
                    .sum();
                sum as f32 * scale * scales[c]
            })
            .collect()
    }

    #[test]
    fn int8_products_are_onnx_dynamic_quantization_on_every_isa() {
        let net = test_net(37, 40, 1, 70).quantized();
        let m = &net.layers[0].w_hidden;
        for isa in [Isa::Portable, Isa::detect()] {
            let mut kernel = KernelMatrix::new(m);
            for t in 0..6 {
                let x: Vec<f32> = (0..m.rows())
                    .map(|i| ((i * 13 + t * 5) as f32 * 0.41).sin() * (t as f32 + 0.5))
                    .collect();
                let mut out = vec![0.0; m.cols()];
                kernel.product(isa, &x, None, &mut out);
                let expected = reference_int8_product(m, &x);
                assert_eq!(out, expected, "{isa:?}, input {t}");
            }
        }
    }

    #[test]
    fn branch_free_exp_matches_the_library_within_a_millionth() {
        let mut worst = (0f32, 0f32);
        for i in -86_000..88_000 {
            let x = i as f32 * 1e-3;
            let error = (exp(x) as f64 / (x as f64).exp() - 1.0).abs() as f32;
            if error > worst.0 {
                worst = (error, x);
            }
        }
        assert!(worst.0 < 1e-6, "relative error {worst:?}");
        assert_eq!(exp(-1000.0), (-87f32).exp().max(exp(-87.0)));
        assert!(exp(1000.0).is_finite());
        assert!((tanh(0.0)).abs() < 1e-7 && (tanh(20.0) - 1.0).abs() < 1e-7);
    }

    #[test]
    fn dynamic_quantization_keeps_zero_exact_and_rounds_half_to_even() {
        let mut q = [0u8; 4];
        let (scale, zero_point) = quantize_input(&[-1.0, 0.0, 0.5, 2.0], &mut q).unwrap();
        assert_eq!(scale, 3.0 / 255.0);
        assert_eq!(zero_point, 85);
        assert_eq!(q[1], zero_point);
        assert_eq!(q[0], 0);
        assert_eq!(q[3], 255);
        assert!(quantize_input(&[0.0; 4], &mut q).is_none());
        // One-hot inputs quantize exactly.
        let (scale, zero_point) = quantize_input(&[0.0, 1.0, 0.0, 0.0], &mut q).unwrap();
        assert_eq!((scale, zero_point, q), (1.0 / 255.0, 0, [0, 255, 0, 0]));
    }

    #[test]
    fn portable_and_vnni_paths_give_identical_steps() {
        for net in [
            test_net(17, 40, 2, 11).quantized(),
            factorized(&test_net(17, 40, 2, 11), 7).quantized(),
            test_net(130, 96, 1, 97).quantized(),
        ] {
            let (mut a, mut b) = (
                GruKernel::new(&net),
                GruKernel::with_isa(&net, Isa::Portable),
            );
            let shape = net.shape();
            let (mut sa, mut sb) = (vec![0.2; shape.state()], vec![0.2; shape.state()]);
            let (mut ya, mut yb) = (vec![0.0; shape.output], vec![0.0; shape.output]);
            for t in 0..10 {
                let x: Vec<f32> = (0..shape.input)
                    .map(|i| (i as f32 * 0.37 + t as f32).sin())
                    .collect();
                a.step(&x, &mut sa, &mut ya);
                b.step(&x, &mut sb, &mut yb);
                assert_eq!(ya, yb);
                assert_eq!(sa, sb);
            }
        }
    }

    #[test]
    fn int8_kernel_stays_near_the_f32_network() {
        // Quantizing weights and inputs moves outputs by a few thousandths.
        let net = test_net(13, 24, 2, 9);
        let quantized = net.quantized();
        let (mut f, mut q) = (GruKernel::new(&net), GruKernel::new(&quantized));
        let shape = net.shape();
        let (mut sf, mut sq) = (vec![0.0; shape.state()], vec![0.0; shape.state()]);
        let (mut yf, mut yq) = (vec![0.0; shape.output], vec![0.0; shape.output]);
        for t in 0..20 {
            let x: Vec<f32> = (0..shape.input)
                .map(|i| if (i + t) % 7 == 0 { 1.0 } else { 0.0 })
                .collect();
            f.step(&x, &mut sf, &mut yf);
            q.step(&x, &mut sq, &mut yq);
            for (a, b) in yf.iter().zip(&yq) {
                assert!((a - b).abs() < 0.05, "step {t}: {a} vs {b}");
            }
        }
    }
}
