//! A compact BERT encoder forward in candle whose Linear layers are `dyn Module`, so that every
//! Linear can be computed from the compressed form (`rbe::candle::RbeCandleLinear`).
//!
//! It follows candle-transformers' `models::bert` op for op (same embeddings, LayerNorm, softmax,
//! exact-erf GELU and additive `f32::MIN` attention mask); `cargo xtask minilm` checks it against
//! candle-transformers on the original weights.

use anyhow::Context;
use candle_core::{D, DType, Module, Tensor};
use candle_nn::{Embedding, LayerNorm};
use candle_transformers::models::bert::Config;
use std::collections::HashMap;

/// A Linear layer as the encoder sees it.
pub type Linear = Box<dyn Module + Send + Sync>;

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    inter: Linear,
    out: Linear,
    out_norm: LayerNorm,
}

/// BERT embeddings + encoder (no pooler).
pub struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
}

fn get<'a>(ts: &'a HashMap<String, Tensor>, name: &str) -> anyhow::Result<&'a Tensor> {
    ts.get(name).with_context(|| format!("model has no tensor `{name}`"))
}

fn norm(ts: &HashMap<String, Tensor>, prefix: &str, eps: f64) -> anyhow::Result<LayerNorm> {
    Ok(LayerNorm::new(get(ts, &format!("{prefix}.weight"))?.clone(), get(ts, &format!("{prefix}.bias"))?.clone(), eps))
}

impl Bert {
    /// Builds the encoder from the model's tensors; `linear(name)` makes the Linear whose weight is
    /// `{name}.weight` and bias `{name}.bias`.
    pub fn new(
        ts: &HashMap<String, Tensor>,
        cfg: &Config,
        mut linear: impl FnMut(&str) -> anyhow::Result<Linear>,
    ) -> anyhow::Result<Self> {
        let h = cfg.hidden_size;
        let emb = |n: &str| -> anyhow::Result<Embedding> { Ok(Embedding::new(get(ts, n)?.clone(), h)) };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                query: linear(&format!("{p}.attention.self.query"))?,
                key: linear(&format!("{p}.attention.self.key"))?,
                value: linear(&format!("{p}.attention.self.value"))?,
                attn_out: linear(&format!("{p}.attention.output.dense"))?,
                attn_norm: norm(ts, &format!("{p}.attention.output.LayerNorm"), cfg.layer_norm_eps)?,
                inter: linear(&format!("{p}.intermediate.dense"))?,
                out: linear(&format!("{p}.output.dense"))?,
                out_norm: norm(ts, &format!("{p}.output.LayerNorm"), cfg.layer_norm_eps)?,
            });
        }
        Ok(Bert {
            word: emb("embeddings.word_embeddings.weight")?,
            position: emb("embeddings.position_embeddings.weight")?,
            token_type: emb("embeddings.token_type_embeddings.weight")?,
            emb_norm: norm(ts, "embeddings.LayerNorm", cfg.layer_norm_eps)?,
            layers,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
        })
    }

    fn split_heads(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        x.reshape((b, s, self.heads, self.head_dim))?.transpose(1, 2)?.contiguous()
    }

    /// Hidden states `[batch, seq, hidden]` for `input_ids`, `token_type_ids` and the 0/1
    /// `attention_mask`, all `[batch, seq]`.
    pub fn forward(&self, ids: &Tensor, types: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (_, seq) = ids.dims2()?;
        let pos = Tensor::new((0..seq as u32).collect::<Vec<_>>().as_slice(), ids.device())?;
        let x = (self.word.forward(ids)? + self.token_type.forward(types)?)?;
        let x = x.broadcast_add(&self.position.forward(&pos)?)?;
        let mut x = self.emb_norm.forward(&x)?;
        let m = mask.unsqueeze(1)?.unsqueeze(1)?.to_dtype(DType::F32)?;
        let m = (m.ones_like()? - &m)?.broadcast_mul(&Tensor::new(f32::MIN, ids.device())?)?;
        for l in &self.layers {
            let q = self.split_heads(&l.query.forward(&x)?)?;
            let k = self.split_heads(&l.key.forward(&x)?)?;
            let v = self.split_heads(&l.value.forward(&x)?)?;
            let scores = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?.broadcast_add(&m)?;
            let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.flatten_from(D::Minus2)?;
            let a = l.attn_norm.forward(&(l.attn_out.forward(&ctx)? + &x)?)?;
            let i = l.inter.forward(&a)?.gelu_erf()?;
            x = l.out_norm.forward(&(l.out.forward(&i)? + &a)?)?;
        }
        Ok(x)
    }
}
