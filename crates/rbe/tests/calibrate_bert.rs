//! The compact BERT (`rbe::calibrate::bert`) against candle-transformers' `BertModel` on a small
//! random model, and the recorder driven through it: padding never reaches `H`.
#![cfg(feature = "calibrate")]

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::BertModel;
use rbe::calibrate::Recorder;
use rbe::calibrate::bert::{Bert, Config, HiddenAct, Linear};
use std::collections::HashMap;

fn config(act: HiddenAct) -> Config {
    Config {
        vocab_size: 30,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 24,
        hidden_act: act,
        max_position_embeddings: 10,
        ..Config::default()
    }
}

fn tensors(cfg: &Config) -> HashMap<String, Tensor> {
    let mut seed = 11u64;
    let dev = Device::Cpu;
    let mut rand = |shape: &[usize], scale: f32| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect();
        Tensor::from_vec(v, shape, &dev).unwrap()
    };
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let mut ts = HashMap::new();
    ts.insert("embeddings.word_embeddings.weight".to_owned(), rand(&[cfg.vocab_size, h], 1.0));
    ts.insert("embeddings.position_embeddings.weight".to_owned(), rand(&[cfg.max_position_embeddings, h], 1.0));
    ts.insert("embeddings.token_type_embeddings.weight".to_owned(), rand(&[2, h], 1.0));
    let mut norms = vec!["embeddings.LayerNorm".to_owned()];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        for (name, out, inp) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", i, h),
            ("output.dense", h, i),
        ] {
            ts.insert(format!("{p}.{name}.weight"), rand(&[out, inp], 0.5));
            ts.insert(format!("{p}.{name}.bias"), rand(&[out], 0.1));
        }
        norms.push(format!("{p}.attention.output.LayerNorm"));
        norms.push(format!("{p}.output.LayerNorm"));
    }
    for p in norms {
        ts.insert(format!("{p}.weight"), (rand(&[h], 0.2) + 1.0).unwrap());
        ts.insert(format!("{p}.bias"), rand(&[h], 0.2));
    }
    ts
}

fn inputs() -> (Tensor, Tensor, Tensor) {
    let dev = Device::Cpu;
    let ids = Tensor::new(&[[2u32, 7, 9, 4, 3, 0, 0], [2, 5, 5, 8, 11, 12, 3]], &dev).unwrap();
    let types = ids.zeros_like().unwrap();
    let mask = Tensor::new(&[[1u32, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]], &dev).unwrap();
    (ids, types, mask)
}

fn plain(ts: &HashMap<String, Tensor>) -> impl FnMut(&str) -> Result<Linear, rbe::calibrate::bert::BertError> + '_ {
    |p| Ok(Box::new(candle_nn::Linear::new(ts[&format!("{p}.weight")].clone(), ts.get(&format!("{p}.bias")).cloned())))
}

#[test]
fn the_compact_bert_matches_candle_transformers() {
    for act in [HiddenAct::Gelu, HiddenAct::GeluApproximate, HiddenAct::Relu] {
        let cfg = config(act);
        let ts = tensors(&cfg);
        let (ids, types, mask) = inputs();
        let vb = candle_nn::VarBuilder::from_tensors(ts.clone(), DType::F32, &Device::Cpu);
        let want = BertModel::load(vb, &cfg).unwrap().forward(&ids, &types, Some(&mask)).unwrap();
        let got = Bert::new(&ts, &cfg, plain(&ts)).unwrap().forward(&ids, &types, &mask).unwrap();
        let diff = (want - got).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "{act:?}: max |difference| {diff}");
    }
}

#[test]
fn recording_through_the_bert_counts_real_tokens_only() {
    let cfg = config(HiddenAct::Gelu);
    let ts = tensors(&cfg);
    let (ids, types, mask) = inputs();
    let mut rec = Recorder::new();
    let model = Bert::new::<rbe::calibrate::bert::BertError>(&ts, &cfg, |p| {
        let w = ts[&format!("{p}.weight")].clone();
        let inputs = w.dims()[1];
        Ok(Box::new(rec.wrap(
            &format!("{p}.weight"),
            inputs,
            candle_nn::Linear::new(w, ts.get(&format!("{p}.bias")).cloned()),
        )))
    })
    .unwrap();
    rec.mask().set_from_tensor(&mask).unwrap();
    let hidden = model.forward(&ids, &types, &mask).unwrap();
    let c = rec.finish();
    assert_eq!(c.tensors.len(), 12);
    assert!(c.tensors.values().all(|t| t.tokens == 12), "5 + 7 real tokens");
    // Layer 0's query sees the embedding output: H is the sum over the real rows of x x^T.
    let x = model.embed(&ids, &types).unwrap().to_vec3::<f32>().unwrap();
    let real: Vec<f32> = x[0][..5].iter().chain(&x[1][..7]).flatten().copied().collect();
    let want = rbe::calibrate::TensorCalibration::from_inputs(16, &real);
    let got = &c.tensors["encoder.layer.0.attention.self.query.weight"];
    let err = got.hessian.iter().zip(&want.hessian).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(err < 1e-4, "max |H - H_ref| = {err}");
    assert_eq!(hidden.dims(), &[2, 7, 16]);
}

#[test]
fn a_missing_tensor_is_named() {
    let cfg = config(HiddenAct::Gelu);
    let mut ts = tensors(&cfg);
    ts.remove("encoder.layer.1.output.LayerNorm.bias");
    let err = Bert::new(&ts, &cfg, plain(&ts)).err().unwrap().to_string();
    assert!(err.contains("encoder.layer.1.output.LayerNorm.bias"), "{err}");
}
