//! Naming rules for department codes, table names and column names.
//!
//! Names are compared exactly, so they are restricted to lower case: a policy that silently fails
//! to apply because of a letter-case mismatch is a known leak in other systems.

use crate::{Error, Result};

fn lower_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// A department code: 2–32 characters, lower-case letters, digits and `-`, starting with a letter
/// (for example `public-security`).
pub fn validate_dept_code(code: &str) -> Result<()> {
    let ok = (2..=32).contains(&code.len())
        && code.starts_with(|c: char| c.is_ascii_lowercase())
        && code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Identifier {
            what: "department code",
            got: code.chars().take(40).collect(),
            rule: "2-32 characters: lower-case letters, digits and '-', starting with a letter",
        })
    }
}

/// A table name: `schema.table`, each part a lower-case identifier (for example
/// `population.residents`).
pub fn validate_table_name(name: &str) -> Result<()> {
    let ok = name.len() <= 64
        && matches!(name.split_once('.'), Some((s, t)) if lower_ident(s) && lower_ident(t));
    if ok {
        Ok(())
    } else {
        Err(Error::Identifier {
            what: "table name",
            got: name.chars().take(70).collect(),
            rule: "'schema.table', each part lower-case letters, digits and '_', starting with a letter",
        })
    }
}

/// A column name: a lower-case identifier of at most 64 characters.
pub fn validate_column_name(name: &str) -> Result<()> {
    if name.len() <= 64 && lower_ident(name) {
        Ok(())
    } else {
        Err(Error::Identifier {
            what: "column name",
            got: name.chars().take(70).collect(),
            rule: "lower-case letters, digits and '_', starting with a letter, at most 64",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_table_name("population.residents").is_ok());
        assert!(validate_table_name("Population.residents").is_err());
        assert!(validate_table_name("residents").is_err());
        assert!(validate_table_name("a.b.c").is_err());
        assert!(validate_column_name("id_number").is_ok());
        assert!(validate_column_name("ID").is_err());
        assert!(validate_dept_code("public-security").is_ok());
        assert!(validate_dept_code("Public").is_err());
    }
}
