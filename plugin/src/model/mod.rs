//! Step models: a stack of GRU layers and a dense output, one step at a time.
//!
//! The same description serves the exporter (ONNX written from trained
//! weights), the loader (ONNX read back and checked against tract) and the
//! allocation-free kernels the inference thread runs.

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
}

impl Matrix {
    /// Number of inputs.
    pub fn rows(&self) -> usize {
        match self {
            Matrix::F32 { rows, .. } | Matrix::Int8 { rows, .. } => *rows,
        }
    }

    /// Number of outputs.
    pub fn cols(&self) -> usize {
        match self {
            Matrix::F32 { cols, .. } | Matrix::Int8 { cols, .. } => *cols,
        }
    }

    /// Bytes the weights take (values and scales).
    pub fn bytes(&self) -> usize {
        match self {
            Matrix::F32 { values, .. } => values.len() * 4,
            Matrix::Int8 { values, scales, .. } => values.len() + scales.len() * 4,
        }
    }

    /// The value at `(row, col)` as the network sees it.
    pub fn get(&self, row: usize, col: usize) -> f32 {
        match self {
            Matrix::F32 { cols, values, .. } => values[row * cols + col],
            Matrix::Int8 {
                cols,
                values,
                scales,
                ..
            } => values[row * cols + col] as f32 * scales[col],
        }
    }

    /// The dequantized values, row-major.
    pub fn to_f32(&self) -> Vec<f32> {
        let (rows, cols) = (self.rows(), self.cols());
        (0..rows * cols)
            .map(|i| self.get(i / cols, i % cols))
            .collect()
    }

    /// Quantizes to int8 with a calibrated scale per output column.
    ///
    /// For each column the clipping range is searched over fractions of the
    /// largest magnitude, keeping the one with the least squared error:
    /// clipping a few outliers buys resolution for all other weights.
    pub fn quantize_int8(&self) -> Matrix {
        let (rows, cols) = (self.rows(), self.cols());
        let mut values = vec![0i8; rows * cols];
        let mut scales = vec![0f32; cols];
        for col in 0..cols {
            let column: Vec<f32> = (0..rows).map(|r| self.get(r, col)).collect();
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

    /// Number of weights and biases.
    pub fn parameters(&self) -> usize {
        self.shape().parameters()
    }

    /// Bytes of the weights as stored.
    pub fn bytes(&self) -> usize {
        let biases: usize = self
            .layers
            .iter()
            .map(|l| l.b_input.len() + l.b_hidden.len())
            .sum();
        let matrices: usize = self
            .layers
            .iter()
            .map(|l| l.w_input.bytes() + l.w_hidden.bytes())
            .sum();
        matrices + self.w_out.bytes() + (biases + self.b_out.len()) * 4
    }

    /// Whether its weight matrices are stored as int8.
    pub fn is_int8(&self) -> bool {
        matches!(self.w_out, Matrix::Int8 { .. })
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
        Ok(())
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
