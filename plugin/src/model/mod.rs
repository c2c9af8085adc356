//! Step models: a stack of GRU layers and a dense output, one step at a time.
//!
//! The same description serves the exporter (ONNX written from trained
//! weights), the loader (ONNX read back and checked against tract) and the
//! allocation-free kernels the inference thread runs.

pub mod files;
pub mod kernel;
pub mod manifest;
pub mod onnx;

/// A weight matrix stored input-major: `rows` inputs by `cols` outputs.
///
/// The product `y = x W` walks rows, so a zero input skips a whole row.
#[derive(Clone, Debug, PartialEq)]
pub enum Matrix {
    /// Plain 32-bit floats, `rows * cols` of them.
    F32 {
        /// Number of inputs.
        rows: usize,
        /// Number of outputs.
        cols: usize,
        /// Row-major values.
        values: Vec<f32>,
    },
    /// Symmetric int8 with one scale per output column: `w = q * scale`.
    ///
    /// The product with such a matrix is integer arithmetic, as ONNX's
    /// `DynamicQuantizeLinear` and `MatMulInteger` define it: the input is
    /// quantized to u8 with a scale and zero point of its own, the products
    /// are summed in i32 and the sum is scaled back to f32.
    Int8 {
        /// Number of inputs.
        rows: usize,
        /// Number of outputs.
        cols: usize,
        /// Row-major quantized values in -127..=127.
        values: Vec<i8>,
        /// One scale per output column.
        scales: Vec<f32>,
    },
    /// A product of two thinner matrices, `W = L R`: `rows x rank` then
    /// `rank x cols`, each stored in its own precision.
    LowRank {
        /// `rows x rank`.
        left: Box<Matrix>,
        /// `rank x cols`.
        right: Box<Matrix>,
    },
}

impl Matrix {
    /// Number of inputs.
    pub fn rows(&self) -> usize {
        match self {
            Matrix::F32 { rows, .. } | Matrix::Int8 { rows, .. } => *rows,
            Matrix::LowRank { left, .. } => left.rows(),
        }
    }

    /// Number of outputs.
    pub fn cols(&self) -> usize {
        match self {
            Matrix::F32 { cols, .. } | Matrix::Int8 { cols, .. } => *cols,
            Matrix::LowRank { right, .. } => right.cols(),
        }
    }

    /// The inner width of a factorized matrix.
    pub fn rank(&self) -> Option<usize> {
        match self {
            Matrix::LowRank { left, .. } => Some(left.cols()),
            _ => None,
        }
    }

    /// Bytes the weights take (values and scales).
    pub fn bytes(&self) -> usize {
        match self {
            Matrix::F32 { values, .. } => values.len() * 4,
            Matrix::Int8 { values, scales, .. } => values.len() + scales.len() * 4,
            Matrix::LowRank { left, right } => left.bytes() + right.bytes(),
        }
    }

    /// Stored weights (factors counted separately) and how many are zero.
    pub fn stored_zeros(&self) -> (usize, usize) {
        match self {
            Matrix::F32 { values, .. } => {
                (values.len(), values.iter().filter(|v| **v == 0.0).count())
            }
            Matrix::Int8 { values, .. } => {
                (values.len(), values.iter().filter(|v| **v == 0).count())
            }
            Matrix::LowRank { left, right } => {
                let (a, b) = (left.stored_zeros(), right.stored_zeros());
                (a.0 + b.0, a.1 + b.1)
            }
        }
    }

    /// Whether its values are int8 (every factor, for a factorized matrix).
    pub fn is_int8(&self) -> bool {
        match self {
            Matrix::F32 { .. } => false,
            Matrix::Int8 { .. } => true,
            Matrix::LowRank { left, right } => left.is_int8() && right.is_int8(),
        }
    }

    /// The dequantized values (the product, for a factorized matrix), row-major.
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Matrix::F32 { values, .. } => values.clone(),
            Matrix::Int8 {
                cols,
                values,
                scales,
                ..
            } => values
                .iter()
                .enumerate()
                .map(|(i, q)| *q as f32 * scales[i % cols])
                .collect(),
            Matrix::LowRank { left, right } => {
                let (rows, rank, cols) = (left.rows(), left.cols(), right.cols());
                let (l, r) = (left.to_f32(), right.to_f32());
                let mut out = vec![0f32; rows * cols];
                for i in 0..rows {
                    for k in 0..rank {
                        let a = l[i * rank + k];
                        for (o, b) in out[i * cols..(i + 1) * cols].iter_mut().zip(&r[k * cols..]) {
                            *o += a * b;
                        }
                    }
                }
                out
            }
        }
    }

    /// The value at `(row, col)` as the network's weights hold it
    /// (dequantized; the product of the factors for a factorized matrix).
    pub fn get(&self, row: usize, col: usize) -> f32 {
        match self {
            Matrix::F32 { cols, values, .. } => values[row * cols + col],
            Matrix::Int8 {
                cols,
                values,
                scales,
                ..
            } => values[row * cols + col] as f32 * scales[col],
            Matrix::LowRank { left, right } => (0..left.cols())
                .map(|k| left.get(row, k) * right.get(k, col))
                .sum(),
        }
    }

    /// Quantizes to int8 with a calibrated scale per output column; the
    /// factors of a factorized matrix are quantized each on its own.
    ///
    /// For each column the clipping range is searched over fractions of the
    /// largest magnitude, keeping the one with the least squared error:
    /// clipping a few outliers buys resolution for all other weights.
    pub fn quantize_int8(&self) -> Matrix {
        if let Matrix::LowRank { left, right } = self {
            return Matrix::LowRank {
                left: Box::new(left.quantize_int8()),
                right: Box::new(right.quantize_int8()),
            };
        }
        let (rows, cols) = (self.rows(), self.cols());
        let dense = self.to_f32();
        let mut values = vec![0i8; rows * cols];
        let mut scales = vec![0f32; cols];
        for col in 0..cols {
            let column: Vec<f32> = (0..rows).map(|r| dense[r * cols + col]).collect();
            let scale = calibrate_scale(&column);
            scales[col] = scale;
            for (r, w) in column.iter().enumerate() {
                values[r * cols + col] = quantize(*w, scale);
            }
        }
        Matrix::Int8 {
            rows,
            cols,
            values,
            scales,
        }
    }

    /// Checks that a factorized matrix's factors agree and are not nested.
    fn validate(&self) -> Result<(), &'static str> {
        match self {
            Matrix::LowRank { left, right } => {
                let nested = left.rank().is_some() || right.rank().is_some();
                if nested || left.cols() != right.rows() || left.cols() == 0 {
                    return Err("factorized matrix sizes disagree");
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn quantize(w: f32, scale: f32) -> i8 {
    if scale == 0.0 {
        0
    } else {
        (w / scale).round().clamp(-127.0, 127.0) as i8
    }
}

/// The per-channel scale with the least squared rounding and clipping error.
pub fn calibrate_scale(column: &[f32]) -> f32 {
    let max = column.iter().fold(0f32, |m, w| m.max(w.abs()));
    if max == 0.0 || !max.is_finite() {
        return 0.0;
    }
    let error = |scale: f32| -> f64 {
        column
            .iter()
            .map(|w| (*w - quantize(*w, scale) as f32 * scale) as f64)
            .map(|e| e * e)
            .sum()
    };
    (50..=100)
        .map(|percent| max * percent as f32 / 100.0 / 127.0)
        .min_by(|a, b| error(*a).total_cmp(&error(*b)))
        .unwrap_or(max / 127.0)
}

/// One GRU layer, gates ordered reset, update, candidate.
///
/// `r = s(x Wr + bir + h Ur + bhr)`, `z = s(x Wz + biz + h Uz + bhz)`,
/// `n = tanh(x Wn + bin + r * (h Un + bhn))`, `h' = (1 - z) * n + z * h`.
#[derive(Clone, Debug, PartialEq)]
pub struct GruLayer {
    /// Input weights, `input x 3H`.
    pub w_input: Matrix,
    /// Recurrent weights, `H x 3H`.
    pub w_hidden: Matrix,
    /// Input bias, `3H`.
    pub b_input: Vec<f32>,
    /// Recurrent bias, `3H`.
    pub b_hidden: Vec<f32>,
}

impl GruLayer {
    /// Number of hidden units.
    pub fn hidden(&self) -> usize {
        self.w_hidden.rows()
    }
}

/// A recurrent step model: GRU layers and a dense readout.
#[derive(Clone, Debug, PartialEq)]
pub struct GruNet {
    /// The layers, input first.
    pub layers: Vec<GruLayer>,
    /// Readout weights, `H x output`.
    pub w_out: Matrix,
    /// Readout bias.
    pub b_out: Vec<f32>,
}

/// Sizes of a step model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    /// Input width `I`.
    pub input: usize,
    /// Units per layer `H`.
    pub hidden: usize,
    /// Number of layers `L`.
    pub layers: usize,
    /// Output width `O`.
    pub output: usize,
}

impl Shape {
    /// Width of the flattened state `[1, L * H]`.
    pub fn state(&self) -> usize {
        self.hidden * self.layers
    }

    /// Number of parameters of a GRU stack of this shape.
    pub fn parameters(&self) -> usize {
        let h = self.hidden;
        let first = 3 * h * (self.input + h + 2);
        let rest = (self.layers.saturating_sub(1)) * 3 * h * (2 * h + 2);
        first + rest + h * self.output + self.output
    }
}

impl GruNet {
    /// The sizes of the network.
    pub fn shape(&self) -> Shape {
        Shape {
            input: self.layers[0].w_input.rows(),
            hidden: self.layers[0].hidden(),
            layers: self.layers.len(),
            output: self.w_out.cols(),
        }
    }

    /// Number of weights and biases as stored (factors counted as stored).
    pub fn parameters(&self) -> usize {
        let weights: usize = self.matrices().map(|m| m.stored_zeros().0).sum();
        let biases: usize = self
            .layers
            .iter()
            .map(|l| l.b_input.len() + l.b_hidden.len())
            .sum();
        weights + biases + self.b_out.len()
    }

    /// Bytes of the weights as stored.
    pub fn bytes(&self) -> usize {
        let biases: usize = self
            .layers
            .iter()
            .map(|l| l.b_input.len() + l.b_hidden.len())
            .sum();
        let matrices: usize = self.matrices().map(Matrix::bytes).sum();
        matrices + (biases + self.b_out.len()) * 4
    }

    /// Whether its weight matrices are stored as int8.
    pub fn is_int8(&self) -> bool {
        self.matrices().all(Matrix::is_int8)
    }

    /// Every weight matrix, input layer first, readout last.
    pub fn matrices(&self) -> impl Iterator<Item = &Matrix> {
        self.layers
            .iter()
            .flat_map(|l| [&l.w_input, &l.w_hidden])
            .chain([&self.w_out])
    }

    /// Every weight matrix, mutably, in the order of [`GruNet::matrices`].
    pub fn matrices_mut(&mut self) -> impl Iterator<Item = &mut Matrix> {
        self.layers
            .iter_mut()
            .flat_map(|l| [&mut l.w_input, &mut l.w_hidden])
            .chain([&mut self.w_out])
    }

    /// Share of stored weights that are exactly zero.
    pub fn sparsity(&self) -> f64 {
        let (total, zeros) = self
            .matrices()
            .map(Matrix::stored_zeros)
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        zeros as f64 / total.max(1) as f64
    }

    /// The largest inner width of its factorized matrices, if any is.
    pub fn rank(&self) -> Option<usize> {
        self.matrices().filter_map(Matrix::rank).max()
    }

    /// The same network with every weight matrix quantized to int8.
    pub fn quantized(&self) -> GruNet {
        GruNet {
            layers: self
                .layers
                .iter()
                .map(|l| GruLayer {
                    w_input: l.w_input.quantize_int8(),
                    w_hidden: l.w_hidden.quantize_int8(),
                    ..l.clone()
                })
                .collect(),
            w_out: self.w_out.quantize_int8(),
            b_out: self.b_out.clone(),
        }
    }

    /// Checks that all sizes agree; the loader calls this on untrusted files.
    pub fn validate(&self) -> Result<(), &'static str> {
        let Some(first) = self.layers.first() else {
            return Err("no layers");
        };
        let h = first.hidden();
        if h == 0 {
            return Err("zero hidden units");
        }
        for (i, l) in self.layers.iter().enumerate() {
            let input = if i == 0 { first.w_input.rows() } else { h };
            let shapes_ok = l.w_input.rows() == input
                && l.w_input.cols() == 3 * h
                && l.w_hidden.rows() == h
                && l.w_hidden.cols() == 3 * h
                && l.b_input.len() == 3 * h
                && l.b_hidden.len() == 3 * h;
            if !shapes_ok {
                return Err("GRU layer sizes disagree");
            }
        }
        if self.w_out.rows() != h || self.b_out.len() != self.w_out.cols() {
            return Err("readout sizes disagree");
        }
        self.matrices().try_for_each(Matrix::validate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::needless_range_loop)] // rows and columns index two matrices
    fn int8_scales_round_trip_within_half_a_step() {
        let values: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let m = Matrix::F32 {
            rows: 16,
            cols: 4,
            values,
        };
        let q = m.quantize_int8();
        let Matrix::Int8 { scales, .. } = &q else {
            panic!()
        };
        for r in 0..16 {
            for c in 0..4 {
                let err = (m.get(r, c) - q.get(r, c)).abs();
                let max = (0..16).map(|r| m.get(r, c).abs()).fold(0.0, f32::max);
                assert!(err <= scales[c] * 0.5 + 1e-6 || m.get(r, c).abs() > 127.0 * scales[c]);
                assert!(scales[c] <= max / 127.0 + 1e-9);
            }
        }
    }

    #[test]
    fn calibrated_scale_never_loses_to_max_abs() {
        let error = |column: &[f32], scale: f32| -> f64 {
            column
                .iter()
                .map(|w| (*w - quantize(*w, scale) as f32 * scale).powi(2) as f64)
                .sum()
        };
        for spread in [1usize, 3, 10, 40] {
            let mut column: Vec<f32> = (0..2000)
                .map(|i| (((i * 7919) % 2001) as f32 / 1000.0 - 1.0).powi(3))
                .collect();
            column.push(spread as f32);
            let max = column.iter().fold(0f32, |m, w| m.max(w.abs()));
            let calibrated = calibrate_scale(&column);
            assert!(error(&column, calibrated) <= error(&column, max / 127.0));
            if spread >= 10 {
                assert!(calibrated < max / 127.0, "a far outlier should be clipped");
            }
        }
    }
}
