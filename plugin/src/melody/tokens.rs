//! The melody vocabulary and the network's input features.
//!
//! Time runs on a 16th-note grid. At every step the melody either holds the
//! sounding note, rests, or starts a note of one pitch in [`LOWEST_PITCH`] to
//! [`HIGHEST_PITCH`]. The network reads the previous step's token and the
//! metrical position of the step it predicts.

/// Lowest MIDI pitch the network can play (C3).
pub const LOWEST_PITCH: u8 = 48;
/// Highest MIDI pitch the network can play (C7).
pub const HIGHEST_PITCH: u8 = 96;
/// Number of note-on tokens.
pub const PITCHES: usize = (HIGHEST_PITCH - LOWEST_PITCH) as usize + 1;
/// Number of tokens: hold, rest and one note-on per pitch.
pub const VOCAB: usize = 2 + PITCHES;
/// Positions in a bar told apart by the input; longer bars wrap.
pub const BAR_POSITIONS: usize = 24;
/// Bar-length classes: 8, 12, 16, 24 steps, and any other length.
pub const METERS: usize = 5;
/// Width of the network's input vector.
pub const INPUT_SIZE: usize = VOCAB + BAR_POSITIONS + METERS;

/// One step of a melody on the 16th-note grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Token {
    /// Keep sounding what sounds (or keep resting).
    Hold,
    /// Silence from this step on.
    Rest,
    /// Start a note of this MIDI pitch.
    Note(u8),
}

impl Token {
    /// Index of the token in the network's output.
    pub fn index(self) -> usize {
        match self {
            Token::Hold => 0,
            Token::Rest => 1,
            Token::Note(pitch) => {
                2 + (pitch.clamp(LOWEST_PITCH, HIGHEST_PITCH) - LOWEST_PITCH) as usize
            }
        }
    }

    /// The token at an output index; indices past the vocabulary read as hold.
    pub fn from_index(index: usize) -> Token {
        match index {
            0 => Token::Hold,
            1 => Token::Rest,
            i if i < VOCAB => Token::Note(LOWEST_PITCH + (i - 2) as u8),
            _ => Token::Hold,
        }
    }

    /// The MIDI pitch of a note-on token.
    pub fn pitch(self) -> Option<u8> {
        match self {
            Token::Note(pitch) => Some(pitch),
            _ => None,
        }
    }
}

/// Where a step sits in its bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meter {
    /// Bar length in 16th notes (16 for 4/4, 12 for 3/4 and 6/8).
    pub bar_steps: u32,
}

impl Meter {
    /// The meter of a time signature `numerator / denominator`.
    pub fn from_signature(numerator: u32, denominator: u32) -> Meter {
        let denominator = denominator.clamp(1, 16);
        let bar_steps = (numerator.max(1) * 16 / denominator).clamp(1, 64);
        Meter { bar_steps }
    }

    fn class(self) -> usize {
        match self.bar_steps {
            8 => 0,
            12 => 1,
            16 => 2,
            24 => 3,
            _ => 4,
        }
    }
}

impl Default for Meter {
    fn default() -> Self {
        Meter { bar_steps: 16 }
    }
}

/// Writes the network input for one step into `x` (length [`INPUT_SIZE`]).
///
/// `previous` is the token of the step before, `step_in_bar` the position of
/// the step being predicted. Does not allocate.
pub fn write_input(x: &mut [f32], previous: Token, step_in_bar: u32, meter: Meter) {
    debug_assert_eq!(x.len(), INPUT_SIZE);
    x.fill(0.0);
    for row in input_rows(previous, step_in_bar, meter) {
        x[row] = 1.0;
    }
}

/// The three entries of the input that are one (all others are zero):
/// previous token, position in the bar, bar-length class.
pub fn input_rows(previous: Token, step_in_bar: u32, meter: Meter) -> [usize; 3] {
    [
        previous.index(),
        VOCAB + (step_in_bar as usize % BAR_POSITIONS),
        VOCAB + BAR_POSITIONS + meter.class(),
    ]
}

/// A melody as a sequence of grid steps in one meter.
#[derive(Clone, Debug, PartialEq)]
pub struct Melody {
    /// The meter of the whole melody.
    pub meter: Meter,
    /// Position in the bar of the first step.
    pub first_step_in_bar: u32,
    /// One token per 16th note.
    pub tokens: Vec<Token>,
}

impl Melody {
    /// Builds a melody from `(pitch, steps)` events; `None` is a rest.
    ///
    /// Pitches outside the playable range are moved by octaves into it.
    pub fn from_events(meter: Meter, first_step_in_bar: u32, events: &[(Option<u8>, u32)]) -> Self {
        let mut tokens = Vec::new();
        for &(pitch, steps) in events {
            if steps == 0 {
                continue;
            }
            let first = match pitch {
                Some(p) => Token::Note(fold_into_range(p)),
                None => Token::Rest,
            };
            tokens.push(first);
            tokens.extend(std::iter::repeat_n(Token::Hold, steps as usize - 1));
        }
        Melody {
            meter,
            first_step_in_bar,
            tokens,
        }
    }

    /// The same melody moved by `semitones`, or `None` if a note leaves the range.
    pub fn transposed(&self, semitones: i32) -> Option<Melody> {
        let mut tokens = Vec::with_capacity(self.tokens.len());
        for token in &self.tokens {
            tokens.push(match *token {
                Token::Note(p) => {
                    let moved = p as i32 + semitones;
                    if !(LOWEST_PITCH as i32..=HIGHEST_PITCH as i32).contains(&moved) {
                        return None;
                    }
                    Token::Note(moved as u8)
                }
                other => other,
            });
        }
        Some(Melody { tokens, ..*self })
    }

    /// Position in the bar of step `i`.
    pub fn step_in_bar(&self, i: usize) -> u32 {
        (self.first_step_in_bar + i as u32) % self.meter.bar_steps
    }
}

/// Moves a pitch by whole octaves into the playable range.
pub fn fold_into_range(pitch: u8) -> u8 {
    let mut p = pitch;
    while p < LOWEST_PITCH {
        p += 12;
    }
    while p > HIGHEST_PITCH {
        p -= 12;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_indices_round_trip() {
        for i in 0..VOCAB {
            assert_eq!(Token::from_index(i).index(), i);
        }
        assert_eq!(Token::Note(LOWEST_PITCH).index(), 2);
        assert_eq!(Token::Note(HIGHEST_PITCH).index(), VOCAB - 1);
    }

    #[test]
    fn events_become_grid_steps() {
        let m = Melody::from_events(
            Meter::default(),
            0,
            &[(Some(60), 2), (None, 1), (Some(62), 1)],
        );
        assert_eq!(
            m.tokens,
            vec![Token::Note(60), Token::Hold, Token::Rest, Token::Note(62)]
        );
    }

    #[test]
    fn input_marks_token_position_and_meter() {
        let mut x = vec![0.0; INPUT_SIZE];
        write_input(&mut x, Token::Note(60), 13, Meter::from_signature(6, 8));
        assert_eq!(x.iter().filter(|v| **v == 1.0).count(), 3);
        assert_eq!(x[Token::Note(60).index()], 1.0);
        assert_eq!(x[VOCAB + 13], 1.0);
        assert_eq!(x[VOCAB + BAR_POSITIONS + 1], 1.0);
    }

    #[test]
    fn transposition_stays_in_range_or_refuses() {
        let m = Melody::from_events(Meter::default(), 0, &[(Some(94), 1)]);
        assert!(m.transposed(3).is_none());
        assert_eq!(m.transposed(-2).unwrap().tokens[0], Token::Note(92));
    }
}
