//! Stage 0: features from the frozen backbone, through the same template, tokenizer, packing and
//! prompt sharing as scoring. Ratings rows give the hidden state at the last token; preference pairs
//! give both answers' last tokens and the prompt's gate position.
//!
//! Records longer than the token limit are skipped and listed in the manifest, never truncated; a
//! pair is dropped when either side is. Extraction is resumable: rows reach disk a batch at a time,
//! and the manifest records how far that got.

use std::path::Path;

use armorm_data::messages::conversation;
use armorm_data::{Dataset, Pair, Row};
use armorm_model::{ConversationError, Embedder, Encoded, ModelError};

use crate::error::{Result, TrainError};
use crate::features::{Kind, Manifest, Shard, Skipped, MANIFEST, ROWS};
use crate::npy::NpyWriter;
use crate::progress::progress_bar;
use crate::ratings::MESSAGES;
use crate::store::{read_json, write_json};

#[derive(Debug, Clone)]
pub struct EmbedSettings {
    /// Longer records are skipped (and counted).
    pub max_input_tokens: usize,
    /// Token budget of one forward pass.
    pub batch_tokens: usize,
    /// Conversations in one forward pass.
    pub batch_size: usize,
    /// Skip (and list) rows that cannot be read or encoded instead of stopping at the first.
    pub skip_bad_rows: bool,
}

impl Default for EmbedSettings {
    fn default() -> Self {
        Self { max_input_tokens: 8192, batch_tokens: 16384, batch_size: 64, skip_bad_rows: false }
    }
}

/// One shard of one input file, to be embedded into a directory.
pub struct EmbedJob<'a> {
    pub embedder: &'a Embedder,
    pub kind: Kind,
    pub input: &'a Dataset,
    pub shard: Shard,
    /// From [`crate::context`]: the input's content, the model and the settings.
    pub key: &'a str,
    pub settings: &'a EmbedSettings,
}

/// A record ready for the backbone: its conversations (one rating, or chosen then rejected).
enum EncodedRecord {
    Kept(Vec<Encoded>),
    TooLong(usize),
    /// What is wrong with it (only with `skip_bad_rows`).
    Bad(String),
}

/// A shard whose remaining records have all been encoded once: where it stands, and how many remain.
pub struct Prepared {
    manifest: Manifest,
    todo: u64,
}

impl EmbedJob<'_> {
    /// Reads where the shard's extraction into `dir` stands and encodes every remaining record once,
    /// so a bad row fails the run before any forward pass (of this shard or of any other input).
    pub fn prepare(&self, dir: &Path) -> Result<Prepared> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let manifest = match read_json::<Manifest>(&dir.join(MANIFEST)) {
            Ok(m) if m.key == self.key && m.shard == self.shard => m,
            _ => Manifest {
                kind: self.kind,
                key: self.key.to_string(),
                input: self.input.name.clone(),
                shard: self.shard,
                hidden_size: self.embedder.hidden_size(),
                next_record: 0,
                kept: 0,
                skipped: Vec::new(),
                complete: false,
            },
        };
        let todo = if manifest.complete { 0 } else { self.validate(manifest.next_record)? };
        Ok(Prepared { manifest, todo })
    }

    /// Runs (or resumes, or finds finished) the prepared shard's extraction into `dir`.
    pub fn extract(&self, dir: &Path, prepared: Prepared) -> Result<Manifest> {
        let Prepared { mut manifest, todo } = prepared;
        if manifest.complete {
            tracing::info!(input = %self.input.name, shard = ?self.shard, "features already extracted");
            return Ok(manifest);
        }
        let manifest_path = dir.join(MANIFEST);
        let d = manifest.hidden_size;
        let mut rows = NpyWriter::<u64>::resume(&dir.join(ROWS), None, manifest.kept)?;
        let mut mats = self
            .kind
            .matrices()
            .iter()
            .map(|m| NpyWriter::<f32>::resume(&dir.join(m.file_name()), Some(d), manifest.kept))
            .collect::<Result<Vec<_>>>()?;
        let progress = progress_bar(todo, &format!("embedding {}", self.input.name));
        let started = std::time::Instant::now();
        let mut batch: Vec<(usize, Vec<Encoded>)> = Vec::new();
        let mut batch_tokens = 0;
        for item in self.records(manifest.next_record)? {
            let (record, at, encoded) = self.read(item)?;
            match encoded {
                EncodedRecord::TooLong(tokens) => {
                    manifest.skipped.push(Skipped { record, at, tokens, bad: None });
                }
                EncodedRecord::Bad(why) => {
                    manifest.skipped.push(Skipped { record, at, tokens: 0, bad: Some(why) });
                }
                EncodedRecord::Kept(encs) => {
                    let tokens: usize = encs.iter().map(Encoded::len).sum();
                    let full = batch_tokens + tokens > self.settings.batch_tokens
                        || (batch.len() + 1) * encs.len() > self.settings.batch_size;
                    if full && !batch.is_empty() {
                        self.flush(&mut batch, &mut rows, &mut mats)?;
                        batch_tokens = 0;
                        manifest.next_record = record;
                        manifest.kept = rows.rows();
                        write_json(&manifest_path, &manifest)?;
                    }
                    batch_tokens += tokens;
                    batch.push((record, encs));
                }
            }
            progress.inc(1);
        }
        self.flush(&mut batch, &mut rows, &mut mats)?;
        manifest.kept = rows.rows();
        manifest.next_record = usize::MAX;
        manifest.complete = true;
        write_json(&manifest_path, &manifest)?;
        progress.finish_and_clear();
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(
            input = %self.input.name,
            shard = ?self.shard,
            kept = manifest.kept,
            skipped = manifest.skipped.len(),
            rows_per_s = format!("{:.1}", todo as f64 / secs.max(1e-9)),
            "features extracted"
        );
        Ok(manifest)
    }

    /// This shard's records from `from` on.
    fn records(&self, from: usize) -> Result<impl Iterator<Item = armorm_data::Result<Row>> + '_> {
        let shard = self.shard;
        Ok(self.input.rows()?.filter(move |r| {
            let at = match r {
                Ok(row) => Some(&row.at),
                Err(e) => e.at(),
            };
            at.is_none_or(|at| at.index >= from && shard.owns(at.index))
        }))
    }

    /// A record's index, location and encoding; an unreadable row is `Bad` with `skip_bad_rows`,
    /// else the error.
    fn read(&self, item: armorm_data::Result<Row>) -> Result<(usize, String, EncodedRecord)> {
        match item {
            Ok(row) => Ok((row.at.index, row.at.to_string(), self.encode(&row)?)),
            Err(e) => match e.at().filter(|_| self.settings.skip_bad_rows) {
                Some(at) => Ok((at.index, at.to_string(), EncodedRecord::Bad(e.to_string()))),
                None => Err(e.into()),
            },
        }
    }

    /// Encodes this shard's records from `from` on; returns how many there are.
    fn validate(&self, from: usize) -> Result<u64> {
        let mut n = 0;
        for item in self.records(from)? {
            self.read(item)?;
            n += 1;
        }
        Ok(n)
    }

    fn encode(&self, row: &Row) -> Result<EncodedRecord> {
        match self.encode_or_refuse(row) {
            Err(e) if self.settings.skip_bad_rows => Ok(EncodedRecord::Bad(e.to_string())),
            other => other,
        }
    }

    fn encode_or_refuse(&self, row: &Row) -> Result<EncodedRecord> {
        let conversations = match self.kind {
            Kind::Ratings => vec![(MESSAGES, conversation(row, MESSAGES)?)],
            Kind::Pairs => {
                let pair = Pair::from_row(row)?;
                vec![("chosen", pair.chosen), ("rejected", pair.rejected)]
            }
        };
        let mut encs = Vec::with_capacity(conversations.len());
        let mut longest = 0;
        for (what, conv) in &conversations {
            match self.embedder.encode(conv) {
                Ok(e) => {
                    longest = longest.max(e.len());
                    encs.push(e);
                }
                Err(ModelError::Conversation(ConversationError::TooLong { len, .. })) => longest = longest.max(len),
                Err(e) => return Err(row.error(format!("{what}: {e}")).into()),
            }
        }
        if longest > self.settings.max_input_tokens || encs.len() < conversations.len() {
            return Ok(EncodedRecord::TooLong(longest));
        }
        Ok(EncodedRecord::Kept(encs))
    }

    /// One forward pass over the batch; its rows are appended and synced to disk.
    fn flush(
        &self,
        batch: &mut Vec<(usize, Vec<Encoded>)>,
        rows: &mut NpyWriter<u64>,
        mats: &mut [NpyWriter<f32>],
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let encs: Vec<&Encoded> = batch.iter().flat_map(|(_, e)| e).collect();
        let per_record = batch[0].1.len();
        let hidden = self.embedder.hidden_states(&encs, self.kind == Kind::Pairs)?;
        let last = hidden.last.to_vec2::<f32>().map_err(ModelError::from)?;
        let gate = hidden.gate.map(|g| g.to_vec2::<f32>()).transpose().map_err(ModelError::from)?;
        for (i, (record, _)) in batch.iter().enumerate() {
            rows.push(&[*record as u64])?;
            match self.kind {
                Kind::Ratings => mats[0].push(&last[i])?,
                Kind::Pairs => {
                    let gate = gate.as_ref().expect("pairs ask for gate rows");
                    mats[0].push(&last[i * per_record])?;
                    mats[1].push(&last[i * per_record + 1])?;
                    mats[2].push(&gate[i * per_record])?;
                }
            }
        }
        for m in mats.iter_mut() {
            m.sync()?;
        }
        rows.sync()?;
        batch.clear();
        Ok(())
    }
}
