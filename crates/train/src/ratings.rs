//! The ratings file of stage 1: one conversation per row with a column per objective, as the public
//! ArmoRM multi-objective data lays it out (`{"messages": [...], "helpsteer-helpfulness": 3, ...}`,
//! null where a source did not rate that objective).

use std::str::FromStr;

use armorm_data::rows::{kind, Row};
use armorm_data::Dataset;
use serde_json::Value;

use crate::error::{Result, TrainError};

/// The column that holds the conversation; every other column is a candidate objective.
pub const MESSAGES: &str = "messages";

/// `--scale NAME=LO:HI`: maps NAME's values linearly from [LO, HI] to [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Scale {
    pub objective: String,
    pub lo: f64,
    pub hi: f64,
}

impl FromStr for Scale {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || format!("--scale {s:?}: expected NAME=LO:HI, e.g. helpsteer-helpfulness=0:4");
        let (name, range) = s.rsplit_once('=').ok_or_else(usage)?;
        let (lo, hi) = range.split_once(':').ok_or_else(usage)?;
        let (lo, hi): (f64, f64) = (lo.trim().parse().map_err(|_| usage())?, hi.trim().parse().map_err(|_| usage())?);
        if name.is_empty() || !lo.is_finite() || !hi.is_finite() || lo == hi {
            return Err(usage());
        }
        Ok(Self { objective: name.to_string(), lo, hi })
    }
}

/// Which columns are objectives, in which order, and how their values are scaled.
#[derive(Debug, Clone, Default)]
pub struct ObjectiveSpec {
    /// `None`: every non-`messages` column, in the order the file first shows them.
    pub names: Option<Vec<String>>,
    pub scales: Vec<Scale>,
}

/// Every row's rating per objective, NaN where missing. Row r of `values` is the file's r-th row.
#[derive(Debug, Clone)]
pub struct Labels {
    pub objectives: Vec<String>,
    /// rows x objectives, row-major.
    pub values: Vec<f64>,
    /// Records whose row could not be read (`skip_bad`): every rating of theirs is missing.
    pub bad: Vec<usize>,
}

impl Labels {
    pub fn rows(&self) -> usize {
        self.values.len() / self.objectives.len().max(1)
    }

    pub fn get(&self, row: usize, objective: usize) -> f64 {
        self.values[row * self.objectives.len() + objective]
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.objectives.iter().position(|o| o == name)
    }

    /// Reads the ratings of `data`: checks every row has a `messages` list and a number, boolean or
    /// null for each objective, and applies the scales. With `skip_bad`, a row that fails the check
    /// gets no rating (and is listed) instead of stopping the read.
    pub fn read(data: &Dataset, spec: &ObjectiveSpec, skip_bad: bool) -> Result<Self> {
        let path = &data.name;
        let objectives = match &spec.names {
            Some(names) => {
                let columns = columns(data, skip_bad)?;
                if let Some(unknown) = names.iter().find(|n| !columns.contains(n)) {
                    return Err(TrainError::Invalid(format!(
                        "{}: unknown objective {unknown:?} (from --objectives); the file's columns are: {}",
                        path,
                        columns.join(", ")
                    )));
                }
                names.clone()
            }
            None => columns(data, skip_bad)?,
        };
        if objectives.is_empty() {
            return Err(TrainError::Invalid(format!("{}: no objective columns besides {MESSAGES:?}", path)));
        }
        let scales = spec
            .scales
            .iter()
            .map(|s| match objectives.iter().position(|o| o == &s.objective) {
                Some(i) => Ok((i, s)),
                None => Err(TrainError::Invalid(format!(
                    "--scale names {:?}, which is not among the objectives: {}",
                    s.objective,
                    objectives.join(", ")
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        let (mut values, mut bad) = (Vec::new(), Vec::new());
        for (record, item) in data.rows()?.enumerate() {
            let read = item.map_err(TrainError::from).and_then(|row| {
                if !matches!(row.get(MESSAGES), Some(Value::Array(_))) {
                    let why = format!("expected a {MESSAGES:?} list of {{\"role\", \"content\"}} messages");
                    return Err(row.error(why).into());
                }
                let mut ratings: Vec<f64> = objectives.iter().map(|name| rating(&row, name)).collect::<Result<_>>()?;
                for (i, s) in &scales {
                    ratings[*i] = (ratings[*i] - s.lo) / (s.hi - s.lo);
                }
                Ok(ratings)
            });
            match read {
                Ok(ratings) => values.extend(ratings),
                Err(e) if skip_bad && e.is_row_error() => {
                    values.extend(std::iter::repeat_n(f64::NAN, objectives.len()));
                    bad.push(record);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Self { objectives, values, bad })
    }
}

/// One objective's value in a row: numbers as they are, booleans as 1/0, null or absent as missing.
fn rating(row: &Row, name: &str) -> Result<f64> {
    match row.fields.get(name) {
        None | Some(Value::Null) => Ok(f64::NAN),
        Some(Value::Bool(b)) => Ok(f64::from(u8::from(*b))),
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| row.error(format!("objective {name:?}: {n} is not a finite number")).into()),
        Some(other) => Err(row
            .error(format!(
                "objective {name:?} must be a number, a boolean or null, found {} ({}); pick the objective columns with --objectives",
                kind(other),
                short(other)
            ))
            .into()),
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// The file's columns other than `messages`, in order of first appearance (over the rows that can
/// be read, with `skip_bad`).
fn columns(data: &Dataset, skip_bad: bool) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    for row in data.rows()? {
        let row = match row {
            Err(e) if skip_bad && e.at().is_some() => continue,
            row => row?,
        };
        for key in row.fields.keys() {
            if key != MESSAGES && !names.contains(key) {
                names.push(key.clone());
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, Dataset) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ratings.jsonl");
        std::fs::write(&path, text).unwrap();
        (dir, armorm_data::DataSource::Local(path).resolve().unwrap())
    }

    const M: &str = r#""messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]"#;

    #[test]
    fn columns_in_file_order_booleans_nulls_and_scales() {
        let (_d, path) =
            file(&format!("{{{M}, \"b\": 4, \"a\": true}}\n{{{M}, \"a\": null, \"c\": 0}}\n{{{M}, \"b\": 0}}\n"));
        let labels = Labels::read(&path, &ObjectiveSpec::default(), false).unwrap();
        assert_eq!(labels.objectives, ["b", "a", "c"]);
        assert_eq!(labels.rows(), 3);
        assert_eq!((labels.get(0, 0), labels.get(0, 1)), (4.0, 1.0));
        assert!(labels.get(1, 1).is_nan() && labels.get(2, 1).is_nan() && labels.get(0, 2).is_nan());
        let spec = ObjectiveSpec { names: Some(vec!["c".into(), "b".into()]), scales: vec!["b=0:4".parse().unwrap()] };
        let picked = Labels::read(&path, &spec, false).unwrap();
        assert_eq!(picked.objectives, ["c", "b"]);
        assert_eq!((picked.get(0, 1), picked.get(2, 1)), (1.0, 0.0));
    }

    #[test]
    fn with_skip_bad_a_bad_row_has_no_ratings_and_is_listed() {
        let (_d, path) =
            file(&format!("{{{M}, \"a\": 1}}\n{{oops\n{{{M}, \"a\": \"high\"}}\n{{\"a\": 2}}\n{{{M}, \"a\": 0}}\n"));
        let labels = Labels::read(&path, &ObjectiveSpec::default(), true).unwrap();
        assert_eq!(labels.rows(), 5, "one row per record, so records stay aligned with the features");
        assert_eq!(labels.bad, [1, 2, 3]);
        assert_eq!((labels.get(0, 0), labels.get(4, 0)), (1.0, 0.0));
        assert!((1..4).all(|r| labels.get(r, 0).is_nan()));
        assert!(Labels::read(&path, &ObjectiveSpec::default(), false).is_err());
    }

    #[test]
    fn bad_ratings_name_the_line_and_the_objective() {
        let (_d, path) = file(&format!("{{{M}, \"a\": 1}}\n\n{{{M}, \"a\": \"high\"}}\n"));
        let err = Labels::read(&path, &ObjectiveSpec::default(), false).unwrap_err().to_string();
        assert!(err.contains("ratings.jsonl:3: objective \"a\" must be a number"), "{err}");
        let spec = ObjectiveSpec { names: Some(vec!["z".into()]), scales: vec![] };
        let err = Labels::read(&path, &spec, false).unwrap_err().to_string();
        assert!(err.contains("unknown objective \"z\"") && err.contains("columns are: a"), "{err}");
        let (_d, path) = file("{\"a\": 1}\n");
        let err = Labels::read(&path, &ObjectiveSpec::default(), false).unwrap_err().to_string();
        assert!(err.contains("ratings.jsonl:1: expected a \"messages\" list"), "{err}");
    }

    #[test]
    fn scale_flags_parse_or_say_how() {
        let s: Scale = "helpsteer-helpfulness=0:4".parse().unwrap();
        assert_eq!((s.objective.as_str(), s.lo, s.hi), ("helpsteer-helpfulness", 0.0, 4.0));
        assert!("x=1:1".parse::<Scale>().is_err());
        assert!("x=a:b".parse::<Scale>().unwrap_err().contains("expected NAME=LO:HI"));
    }
}
