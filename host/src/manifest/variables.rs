//! Values a manifest may take from outside itself: a function's `variables` (which its
//! guest reads through `wasi:config`) and a Redis store's `url`. Each is a literal, the
//! value of an environment variable (`{ env = "NAME" }`, as a Knative Service sets it from
//! a Secret), or the contents of a file (`{ file = "/path" }`, a mounted Secret), optionally
//! with a `default`. They are resolved when the host starts, never when a manifest is only
//! read (`deploy render` must not need the secrets), and resolved values never reach a log.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a value comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Variable {
    /// Written in the manifest.
    Literal(String),
    /// The environment variable `name` of the host process.
    Env {
        /// The variable's name.
        name: String,
        /// Used when it is not set.
        default: Option<String>,
    },
    /// The contents of the file at `path` (a trailing newline removed).
    File {
        /// The file, resolved against the manifest's directory.
        path: PathBuf,
        /// Used when it does not exist.
        default: Option<String>,
    },
    /// A Spin component variable: text with `{{ name }}` references to application
    /// variables, each read from its environment variable.
    Template(Vec<TemplatePart>),
}

/// A piece of a [`Variable::Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    /// Written as it is.
    Text(String),
    /// An application variable: from the runtime configuration's providers, in their
    /// order, then `SPIN_VARIABLE_<NAME>`, then its default.
    Variable {
        /// Its name in `[variables]`.
        name: String,
        /// The providers a runtime configuration file declares, asked first.
        providers: Vec<Provider>,
        /// The environment variable it is read from after them.
        env: String,
        /// Used when none has it; none for a required variable.
        default: Option<String>,
    },
}

/// A variables provider of Spin's runtime configuration file (`[[variables_provider]]`).
#[derive(Clone, PartialEq, Eq)]
pub enum Provider {
    /// `type = "static"`: the values written in the file.
    Static(BTreeMap<String, String>),
    /// `type = "env"`: `<PREFIX>_<NAME>` from the environment (`<NAME>` without a prefix).
    Env {
        /// The prefix, without the `_` that joins it.
        prefix: String,
    },
}

// A static provider's values may be secrets: their names only.
impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provider::Static(values) => f.debug_set().entries(values.keys()).finish(),
            Provider::Env { prefix } => write!(f, "env {prefix:?}"),
        }
    }
}

impl Provider {
    /// The value it gives variable `name`, if it has one.
    fn get(&self, name: &str) -> Option<String> {
        match self {
            Provider::Static(values) => values.get(name).cloned(),
            Provider::Env { prefix } if prefix.is_empty() => {
                std::env::var(name.to_ascii_uppercase()).ok()
            }
            Provider::Env { prefix } => {
                std::env::var(format!("{prefix}_{}", name.to_ascii_uppercase())).ok()
            }
        }
    }

    /// Whether it holds a value for `name` whatever the environment.
    pub fn has_static(&self, name: &str) -> bool {
        matches!(self, Provider::Static(values) if values.contains_key(name))
    }
}

// Literals are the manifest's own text; the others say where their value comes from, never
// what it is.
impl fmt::Debug for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Variable::Literal(v) => write!(f, "{v:?}"),
            Variable::Env { name, .. } => write!(f, "{{ env = {name:?} }}"),
            Variable::File { path, .. } => write!(f, "{{ file = {:?} }}", path.display()),
            Variable::Template(parts) => {
                f.write_str("\"")?;
                for part in parts {
                    match part {
                        TemplatePart::Text(t) => f.write_str(t)?,
                        TemplatePart::Variable { env, .. } => write!(f, "{{{{ {env} }}}}")?,
                    }
                }
                f.write_str("\"")
            }
        }
    }
}

/// A value that could not be resolved, saying what to set.
#[derive(Debug, thiserror::Error)]
pub enum VariableError {
    /// The environment variable is not set and there is no default.
    #[error("the environment variable {0} is not set (set it, or give the variable a `default`)")]
    EnvNotSet(String),
    /// The file cannot be read and there is no default.
    #[error("cannot read {path} ({reason}; mount it, or give the variable a `default`)")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

impl Variable {
    /// Reads a value from its manifest form; `what` names it in errors
    /// (`variables.api_key`).
    pub(super) fn from_toml(value: &toml::Value, base: &Path, what: &str) -> Result<Self, String> {
        let expected = format!(
            "`{what}` must be a string, {{ env = \"NAME\" }} or {{ file = \"/path\" }}, optionally with default = \"...\""
        );
        let table = match value {
            toml::Value::String(s) => return Ok(Variable::Literal(s.clone())),
            toml::Value::Table(t) => t,
            _ => return Err(format!("{expected}; got {}", value.type_str())),
        };
        let string = |key: &str| -> Result<Option<String>, String> {
            match table.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(format!(
                    "`{what}.{key}` must be a string, got {}",
                    other.type_str()
                )),
            }
        };
        if let Some(key) = table
            .keys()
            .find(|k| !["env", "file", "default"].contains(&k.as_str()))
        {
            return Err(format!("{expected}; `{key}` is not one of its keys"));
        }
        let default = string("default")?;
        match (string("env")?, string("file")?) {
            (Some(name), None) if valid_env_name(&name) => Ok(Variable::Env { name, default }),
            (Some(name), None) => Err(format!(
                "`{what}.env`: {name:?} is not an environment variable name (letters, digits and _, not starting with a digit)"
            )),
            (None, Some(path)) if !path.is_empty() => Ok(Variable::File {
                path: base.join(path),
                default,
            }),
            _ => Err(expected),
        }
    }

    /// The environment variable this value comes from, if it does.
    pub fn env_name(&self) -> Option<&str> {
        match self {
            Variable::Env { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The value now.
    pub fn resolve(&self) -> Result<String, VariableError> {
        match self {
            Variable::Literal(v) => Ok(v.clone()),
            Variable::Env { name, default } => match std::env::var(name) {
                Ok(v) => Ok(v),
                Err(_) => default
                    .clone()
                    .ok_or_else(|| VariableError::EnvNotSet(name.clone())),
            },
            Variable::File { path, default } => match std::fs::read_to_string(path) {
                // Secrets mounted as files, and files written by hand, often end in a
                // newline that is not part of the value.
                Ok(v) => Ok(v.strip_suffix('\n').unwrap_or(&v).to_string()),
                Err(e) => default.clone().ok_or_else(|| VariableError::File {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                }),
            },
            Variable::Template(parts) => {
                let mut value = String::new();
                for part in parts {
                    match part {
                        TemplatePart::Text(t) => value.push_str(t),
                        TemplatePart::Variable {
                            name,
                            providers,
                            env,
                            default,
                        } => match providers.iter().find_map(|p| p.get(name)) {
                            Some(v) => value.push_str(&v),
                            None => {
                                let read = Variable::Env {
                                    name: env.clone(),
                                    default: default.clone(),
                                };
                                value.push_str(&read.resolve()?);
                            }
                        },
                    }
                }
                Ok(value)
            }
        }
    }
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Variable, String> {
        let value: toml::Value = toml::from_str(&format!("v = {text}")).unwrap();
        Variable::from_toml(&value["v"], Path::new("/app"), "variables.v")
    }

    #[test]
    fn three_sources_with_defaults() {
        assert_eq!(parse("\"x\"").unwrap(), Variable::Literal("x".into()));
        let v = parse("{ env = \"WASMFN_TEST_UNSET_VAR\", default = \"d\" }").unwrap();
        assert_eq!(v.resolve().unwrap(), "d");
        let v = parse("{ env = \"WASMFN_TEST_UNSET_VAR\" }").unwrap();
        assert!(
            v.resolve()
                .unwrap_err()
                .to_string()
                .contains("WASMFN_TEST_UNSET_VAR is not set")
        );

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        let value: toml::Value = toml::from_str("v = { file = \"token\" }").unwrap();
        let v = Variable::from_toml(&value["v"], dir.path(), "variables.v").unwrap();
        assert_eq!(v.resolve().unwrap(), "s3cret");
        assert!(!format!("{v:?}").contains("s3cret"));
        let missing = parse("{ file = \"/no/such/file\" }").unwrap();
        assert!(
            missing
                .resolve()
                .unwrap_err()
                .to_string()
                .contains("/no/such/file")
        );
    }

    #[test]
    fn bad_forms_say_what_was_expected() {
        for (text, says) in [
            ("1", "must be a string, { env"),
            ("{ env = \"A\", file = \"b\" }", "must be a string"),
            ("{ default = \"x\" }", "must be a string"),
            ("{ env = \"1A\" }", "not an environment variable name"),
            ("{ env = 3 }", "`variables.v.env` must be a string"),
            ("{ vault = \"x\" }", "`vault` is not one of its keys"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
