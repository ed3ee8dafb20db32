//! A compact BERT encoder forward in candle whose Linear layers are `dyn Module`, so that every
//! Linear can be swapped: computed from the compressed form (`rbe::candle::RbeCandleLinear`),
//! wrapped by a [`CaptureLinear`](super::CaptureLinear), or perturbed to probe a sensitivity.
//!
//! It follows candle-transformers' `models::bert` op for op (same embeddings, LayerNorm, softmax,
//! GELU and additive `f32::MIN` attention mask); `cargo xtask minilm` checks it against
//! candle-transformers on the original weights.

use candle_core::{D, DType, Module, Tensor};
use candle_nn::{Embedding, LayerNorm};
pub use candle_transformers::models::bert::{Config, HiddenAct};
use std::collections::HashMap;

/// A Linear layer as the encoder sees it.
pub type Linear = Box<dyn Module + Send + Sync>;

/// Why a BERT cannot be built from a set of tensors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BertError {
    /// A tensor the BERT layout needs is absent.
    #[error("model has no tensor `{0}`: not a BERT-like model")]
    Missing(String),
    /// The configuration cannot describe this encoder.
    #[error("config: {0}")]
    Config(String),
    /// A candle operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The Linears of one encoder layer, in the order [`Bert::LINEARS`] names them.
struct Layer {
    linears: [Linear; 6],
    attn_norm: LayerNorm,
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
    act: HiddenAct,
    prefix: String,
}

fn get<'a>(ts: &'a HashMap<String, Tensor>, name: &str) -> Result<&'a Tensor, BertError> {
    ts.get(name).ok_or_else(|| BertError::Missing(name.to_owned()))
}

fn norm(ts: &HashMap<String, Tensor>, prefix: &str, eps: f64) -> Result<LayerNorm, BertError> {
    Ok(LayerNorm::new(get(ts, &format!("{prefix}.weight"))?.clone(), get(ts, &format!("{prefix}.bias"))?.clone(), eps))
}

impl Bert {
    /// The Linears of encoder layer `i`, relative to `encoder.layer.{i}`, in forward order.
    pub const LINEARS: [&'static str; 6] = [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ];

    /// The prefix of the tensor names in `ts`: `""` for `embeddings.*`, `"bert."` for
    /// `bert.embeddings.*` (checkpoints saved with a task head).
    pub fn detect_prefix(ts: &HashMap<String, Tensor>) -> Result<&'static str, BertError> {
        const WORD: &str = "embeddings.word_embeddings.weight";
        if ts.contains_key(WORD) {
            Ok("")
        } else if ts.contains_key(&format!("bert.{WORD}")) {
            Ok("bert.")
        } else {
            Err(BertError::Missing(WORD.to_owned()))
        }
    }

    /// The names of every Linear (`{name}.weight` is its weight), in forward order.
    pub fn linear_names(cfg: &Config, prefix: &str) -> Vec<String> {
        (0..cfg.num_hidden_layers)
            .flat_map(|i| Self::LINEARS.iter().map(move |l| format!("{prefix}encoder.layer.{i}.{l}")))
            .collect()
    }

    /// Builds the encoder from the model's tensors (names as [`Bert::detect_prefix`] finds
    /// them); `linear(name)` makes the Linear whose weight is `{name}.weight` and bias
    /// `{name}.bias`.
    pub fn new<E: From<BertError>>(
        ts: &HashMap<String, Tensor>,
        cfg: &Config,
        mut linear: impl FnMut(&str) -> Result<Linear, E>,
    ) -> Result<Self, E> {
        let h = cfg.hidden_size;
        if cfg.num_attention_heads == 0 || !h.is_multiple_of(cfg.num_attention_heads) {
            return Err(BertError::Config(format!(
                "hidden_size {h} is not a multiple of num_attention_heads {}",
                cfg.num_attention_heads
            ))
            .into());
        }
        let prefix = Self::detect_prefix(ts)?;
        let emb = |n: &str| -> Result<Embedding, BertError> {
            Ok(Embedding::new(get(ts, &format!("{prefix}{n}"))?.clone(), h))
        };
        let eps = cfg.layer_norm_eps;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("{prefix}encoder.layer.{i}");
            let mut linears = Vec::with_capacity(6);
            for l in Self::LINEARS {
                linears.push(linear(&format!("{p}.{l}"))?);
            }
            let Ok(linears) = <[Linear; 6]>::try_from(linears) else { unreachable!("six names, six linears") };
            layers.push(Layer {
                linears,
                attn_norm: norm(ts, &format!("{p}.attention.output.LayerNorm"), eps)?,
                out_norm: norm(ts, &format!("{p}.output.LayerNorm"), eps)?,
            });
        }
        Ok(Bert {
            word: emb("embeddings.word_embeddings.weight")?,
            position: emb("embeddings.position_embeddings.weight")?,
            token_type: emb("embeddings.token_type_embeddings.weight")?,
            emb_norm: norm(ts, &format!("{prefix}embeddings.LayerNorm"), eps)?,
            layers,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
            act: cfg.hidden_act,
            prefix: prefix.to_owned(),
        })
    }

    /// Number of encoder layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Replaces the Linear called `name` (as [`Bert::linear_names`] gives it) and returns the old
    /// one, or gives `linear` back when no Linear has that name.
    pub fn replace_linear(&mut self, name: &str, linear: Linear) -> Result<Linear, Linear> {
        let Some((layer, which)) = self.locate(name) else { return Err(linear) };
        Ok(std::mem::replace(&mut self.layers[layer].linears[which], linear))
    }

    /// The encoder layer and slot of the Linear called `name`.
    pub fn locate(&self, name: &str) -> Option<(usize, usize)> {
        let rest = name.strip_prefix(&self.prefix)?.strip_prefix("encoder.layer.")?;
        let (i, l) = rest.split_once('.')?;
        let i: usize = i.parse().ok()?;
        let which = Self::LINEARS.iter().position(|&x| x == l)?;
        (i < self.layers.len()).then_some((i, which))
    }

    fn split_heads(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        x.reshape((b, s, self.heads, self.head_dim))?.transpose(1, 2)?.contiguous()
    }

    /// The embedding layer's output `[batch, seq, hidden]` (the first encoder layer's input).
    pub fn embed(&self, ids: &Tensor, types: &Tensor) -> candle_core::Result<Tensor> {
        let (_, seq) = ids.dims2()?;
        let pos = Tensor::new((0..seq as u32).collect::<Vec<_>>().as_slice(), ids.device())?;
        let x = (self.word.forward(ids)? + self.token_type.forward(types)?)?;
        let x = x.broadcast_add(&self.position.forward(&pos)?)?;
        self.emb_norm.forward(&x)
    }

    /// The additive attention bias for a 0/1 `attention_mask` `[batch, seq]`.
    pub fn attention_bias(&self, mask: &Tensor) -> candle_core::Result<Tensor> {
        let m = mask.unsqueeze(1)?.unsqueeze(1)?.to_dtype(DType::F32)?;
        (m.ones_like()? - &m)?.broadcast_mul(&Tensor::new(f32::MIN, mask.device())?)
    }

    /// Encoder layer `i` on its input `x`, with `bias` from [`Bert::attention_bias`].
    pub fn layer(&self, i: usize, x: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
        let l = &self.layers[i];
        let [query, key, value, attn_out, inter, out] = &l.linears;
        let q = self.split_heads(&query.forward(x)?)?;
        let k = self.split_heads(&key.forward(x)?)?;
        let v = self.split_heads(&value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?.broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.flatten_from(D::Minus2)?;
        let a = l.attn_norm.forward(&(attn_out.forward(&ctx)? + x)?)?;
        let i = inter.forward(&a)?;
        let i = match self.act {
            HiddenAct::Gelu => i.gelu_erf()?,
            HiddenAct::GeluApproximate => i.gelu()?,
            HiddenAct::Relu => i.relu()?,
        };
        l.out_norm.forward(&(out.forward(&i)? + &a)?)
    }

    /// Hidden states `[batch, seq, hidden]` for `input_ids`, `token_type_ids` and the 0/1
    /// `attention_mask`, all `[batch, seq]`.
    pub fn forward(&self, ids: &Tensor, types: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let bias = self.attention_bias(mask)?;
        let mut x = self.embed(ids, types)?;
        for i in 0..self.layers.len() {
            x = self.layer(i, &x, &bias)?;
        }
        Ok(x)
    }
}
