//! Table manifests: the TOML form stewards write, and its validation.

use crate::{Error, Result};
use citybrain_types::{
    DataType, Date, Library, Sensitivity, ShareType, UpdateCycle, validate_column_name,
    validate_dept_code, validate_table_name,
};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

/// One table of the catalog, as a steward describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableManifest {
    /// `schema.table`, lower case.
    pub name: String,
    /// Classification code + sequence code.
    pub resource_code: String,
    /// Chinese title.
    pub title: String,
    /// English title.
    pub title_en: String,
    /// Code of the providing department.
    pub provider_code: String,
    /// Name of the providing department.
    pub provider_name: String,
    /// What the table holds.
    #[serde(rename = "abstract")]
    pub summary: String,
    /// Base library or departmental.
    pub library: Library,
    /// Classification (for example 基础信息资源/人口).
    #[serde(default)]
    pub classification: String,
    /// Column used for lookups, when the table has one.
    #[serde(default)]
    pub key_column: Option<String>,
    /// How often the provider refreshes the table.
    pub update_cycle: UpdateCycle,
    /// Share type of the table.
    pub share_type: ShareType,
    /// For conditional tables the condition, for not-shared tables the legal basis.
    #[serde(default)]
    pub share_condition: String,
    /// How the data is shared (api, batch, ...).
    #[serde(default)]
    pub share_method: String,
    /// Whether the table is open to the public.
    #[serde(default)]
    pub open_to_public: bool,
    /// Condition of opening, if any.
    #[serde(default)]
    pub open_condition: String,
    /// Dataset path under the data root; none when the hub holds no data for the table.
    #[serde(default)]
    pub dataset: Option<String>,
    /// Publish date, `YYYY-MM-DD`.
    #[serde(default)]
    pub publish_date: Option<String>,
    /// Resource codes of related tables.
    #[serde(default)]
    pub related_resource_codes: Vec<String>,
    /// The data items.
    pub columns: Vec<ColumnManifest>,
}

/// One data item (column) of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnManifest {
    /// Column name, lower case.
    pub name: String,
    /// Chinese title.
    pub title: String,
    /// Value type.
    #[serde(rename = "type")]
    pub data_type: DataType,
    /// Share type of the column; never more open than the table's.
    pub share_type: ShareType,
    /// Sensitivity of the values.
    pub sensitivity: Sensitivity,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

impl TableManifest {
    /// Checks every rule; the first broken one is reported with its field path. `file` names the
    /// source in the error (a manifest file name, or `request`).
    pub fn validate(&self, file: &str) -> Result<()> {
        let bad = |field: &str, reason: String| Error::Invalid {
            file: file.to_owned(),
            field: field.to_owned(),
            reason,
        };
        validate_table_name(&self.name).map_err(|e| bad("name", e.to_string()))?;
        let code_ok = (3..=40).contains(&self.resource_code.len())
            && self
                .resource_code
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !code_ok {
            return Err(bad(
                "resource_code",
                "3-40 characters: upper-case letters, digits, '-' and '.'".into(),
            ));
        }
        for (field, value) in [
            ("title", &self.title),
            ("title_en", &self.title_en),
            ("provider_name", &self.provider_name),
            ("abstract", &self.summary),
        ] {
            if value.trim().is_empty() {
                return Err(bad(field, "must not be empty".into()));
            }
        }
        validate_dept_code(&self.provider_code).map_err(|e| bad("provider_code", e.to_string()))?;
        if self.share_type != ShareType::Unconditional && self.share_condition.trim().is_empty() {
            return Err(bad(
                "share_condition",
                format!(
                    "required for a {} table (the condition, or for not_shared the legal basis)",
                    self.share_type
                ),
            ));
        }
        if let Some(ds) = &self.dataset {
            let ok = !ds.is_empty()
                && ds.split('/').all(|seg| {
                    !seg.is_empty()
                        && seg
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                });
            if !ok {
                return Err(bad(
                    "dataset",
                    "a relative path of lower-case segments ([a-z0-9_]) separated by '/'".into(),
                ));
            }
        }
        if let Some(d) = &self.publish_date
            && Date::parse_iso(d).is_none()
        {
            return Err(bad("publish_date", "expected a date as YYYY-MM-DD".into()));
        }
        if self.columns.is_empty() {
            return Err(bad("columns", "a table needs at least one column".into()));
        }
        let mut seen = HashSet::new();
        for (i, c) in self.columns.iter().enumerate() {
            let field = |f: &str| format!("columns[{i}].{f}");
            validate_column_name(&c.name).map_err(|e| bad(&field("name"), e.to_string()))?;
            if !seen.insert(c.name.as_str()) {
                return Err(bad(
                    &field("name"),
                    format!("duplicate column '{}'", c.name),
                ));
            }
            if c.title.trim().is_empty() {
                return Err(bad(&field("title"), "must not be empty".into()));
            }
            if c.share_type.openness() > self.share_type.openness() {
                return Err(bad(
                    &field("share_type"),
                    format!(
                        "'{}' is more open than the table's '{}'",
                        c.share_type, self.share_type
                    ),
                ));
            }
        }
        if let Some(k) = &self.key_column
            && !seen.contains(k.as_str())
        {
            return Err(bad(
                "key_column",
                format!("'{k}' is not one of the columns"),
            ));
        }
        if self
            .related_resource_codes
            .iter()
            .any(|c| c.trim().is_empty())
        {
            return Err(bad("related_resource_codes", "empty code".into()));
        }
        Ok(())
    }

    /// The column of this name, if any.
    pub fn column(&self, name: &str) -> Option<&ColumnManifest> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Parses and validates one manifest's text; `file` names it in errors.
pub fn parse_manifest(file: &str, text: &str) -> Result<TableManifest> {
    let m: TableManifest = toml::from_str(text).map_err(|e| Error::Parse {
        file: file.to_owned(),
        message: e.to_string().trim_end().replace('\n', " "),
    })?;
    m.validate(file)?;
    Ok(m)
}

/// Reads every `*.toml` manifest below `dir` (recursively, in name order); see [`parse_all`].
pub fn load_dir(dir: &Path) -> Result<Vec<TableManifest>> {
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    let texts = files
        .iter()
        .map(|path| {
            let label = path.strip_prefix(dir).unwrap_or(path).display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| Error::Read {
                path: label.clone(),
                reason: e.to_string(),
            })?;
            Ok((label, text))
        })
        .collect::<Result<Vec<_>>>()?;
    parse_all(texts)
}

/// Parses and validates manifests given as `(file label, text)`, refusing duplicate table names
/// or resource codes across them. Nothing is returned unless every manifest is valid.
pub fn parse_all(files: impl IntoIterator<Item = (String, String)>) -> Result<Vec<TableManifest>> {
    let mut out: Vec<TableManifest> = Vec::new();
    let mut names = HashSet::new();
    let mut codes = HashSet::new();
    for (label, text) in files {
        let m = parse_manifest(&label, &text)?;
        if !names.insert(m.name.clone()) {
            return Err(Error::Invalid {
                file: label,
                field: "name".into(),
                reason: format!("table '{}' is described by another manifest too", m.name),
            });
        }
        if !codes.insert(m.resource_code.clone()) {
            return Err(Error::Invalid {
                file: label,
                field: "resource_code".into(),
                reason: format!("'{}' is used by another manifest too", m.resource_code),
            });
        }
        out.push(m);
    }
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::Read {
        path: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    for entry in rd {
        let path = entry
            .map_err(|e| Error::Read {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })?
            .path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "toml") {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const SAMPLE: &str = r#"
name = "hrss.pension"
resource_code = "D14-0001"
title = "养老保险待遇发放"
title_en = "Pension payments"
provider_code = "hrss"
provider_name = "南海区人力资源和社会保障局"
abstract = "Monthly pension payments per retiree."
library = "department"
key_column = "id_number"
update_cycle = "monthly"
share_type = "conditional"
share_condition = "For social assistance eligibility checks only."

[[columns]]
name = "id_number"
title = "公民身份号码"
type = "string"
share_type = "conditional"
sensitivity = "sensitive"

[[columns]]
name = "amount"
title = "发放金额"
type = "float64"
share_type = "conditional"
sensitivity = "personal"
"#;

    #[test]
    fn sample_parses() {
        let m = parse_manifest("pension.toml", SAMPLE).unwrap();
        assert_eq!(m.columns.len(), 2);
    }

    #[test]
    fn unknown_field_is_named() {
        let text = SAMPLE.replace("update_cycle", "update_cycel");
        let err = parse_manifest("pension.toml", &text)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("pension.toml:"), "{err}");
        assert!(err.contains("update_cycel"), "{err}");
    }

    #[test]
    fn rule_errors_name_the_field() {
        let cases = [
            (SAMPLE.replace("hrss.pension", "Pension"), "'name'"),
            (
                SAMPLE.replace(
                    "share_condition = \"For social assistance eligibility checks only.\"",
                    "",
                ),
                "'share_condition'",
            ),
            (
                SAMPLE.replacen(
                    "share_type = \"conditional\"\nsensitivity = \"personal\"",
                    "share_type = \"unconditional\"\nsensitivity = \"personal\"",
                    1,
                ),
                "'columns[1].share_type'",
            ),
            (
                SAMPLE.replace("key_column = \"id_number\"", "key_column = \"idno\""),
                "'key_column'",
            ),
            (
                SAMPLE.replace("name = \"amount\"", "name = \"id_number\""),
                "'columns[1].name'",
            ),
            (SAMPLE.replace("\"monthly\"", "\"hourly\""), "hourly"),
        ];
        for (text, want) in cases {
            let err = parse_manifest("m.toml", &text).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }
}
