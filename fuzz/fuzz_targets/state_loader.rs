//! Any bytes offered as Wren's saved state: nice-plug's JSON with Wren's
//! parameters and its `models` field. Whatever loads, the engine settings
//! the parameters make stay in range and saving again round-trips the
//! model list; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nice_plug::params::InternalParamMut;
use nice_plug::plugin::ParamValue;
use nice_plug::prelude::*;
use wren::plugin::{Wren, WrenParams};

fuzz_target!(|data: &[u8]| {
    let Ok(mut state) = serde_json::from_slice::<PluginState>(data) else {
        return;
    };
    Wren::filter_state(&mut state);
    let params = std::sync::Arc::new(WrenParams::default());
    let map = params.param_map();
    for (id, value) in &state.params {
        let Some((_, ptr, _)) = map.iter().find(|(i, ..)| i == id) else {
            continue;
        };
        // SAFETY: the pointers come from `params`, which outlives this loop;
        // these are the calls nice-plug's own state loader makes.
        unsafe {
            let _ = match (ptr, value) {
                (ParamPtr::FloatParam(p), ParamValue::F32(v)) => {
                    (**p)._internal_set_plain_value(*v)
                }
                (ParamPtr::IntParam(p), ParamValue::I32(v)) => (**p)._internal_set_plain_value(*v),
                (ParamPtr::BoolParam(p), ParamValue::Bool(v)) => {
                    (**p)._internal_set_plain_value(*v)
                }
                (ParamPtr::EnumParam(p), ParamValue::I32(v)) => (**p)._internal_set_plain_value(*v),
                (ParamPtr::EnumParam(p), ParamValue::String(v)) => (**p).set_from_id(v),
                _ => false,
            };
        }
    }
    params.deserialize_fields(&state.fields);
    let settings = params.settings();
    assert!((1..=8).contains(&settings.voices));
    assert!(settings.gain.is_finite() && settings.gain >= 0.0);
    assert!(settings.free_tempo.is_finite() && settings.free_tempo > 0.0);
    assert!(settings.controls.low <= settings.controls.high);
    assert!(settings.controls.temperature.is_finite());
    let saved = params.serialize_fields();
    let paths = params.models.0.paths();
    let again: Vec<String> = saved
        .get("models")
        .map(|json| serde_json::from_str(json).expect("Wren writes valid JSON"))
        .unwrap_or_default();
    assert_eq!(again, paths);
});
