//! A tiny `--name value` flag reader for the load drivers (`idle`, `fanout_load`), so
//! that they need no CLI crate. In: the process's arguments; out: typed values with
//! defaults. A flag given without its value is an error, never a silent default.

use std::str::FromStr;

/// Command-line flags as `--name value` pairs (and bare `--name` switches).
#[derive(Debug, Clone)]
pub struct Flags(Vec<String>);

impl Flags {
    /// The process's own arguments.
    pub fn from_env() -> Self {
        Self(std::env::args().skip(1).collect())
    }

    /// The value after `--name`, parsed, or `default` when the flag is absent.
    ///
    /// # Errors
    /// A flag whose value is missing or does not parse.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.raw(name) {
            None if self.has(name) => Err(format!("--{name} wants a value")),
            None => Ok(default),
            Some(value) => value.parse().map_err(|_| format!("--{name}: cannot parse `{value}`")),
        }
    }

    /// The value after `--name`, if present (a following `--flag` is not a value).
    pub fn raw(&self, name: &str) -> Option<&str> {
        let flag = format!("--{name}");
        let at = self.0.iter().position(|a| *a == flag)?;
        self.0.get(at + 1).map(String::as_str).filter(|v| !v.starts_with("--"))
    }

    /// Whether the switch `--name` is present.
    pub fn has(&self, name: &str) -> bool {
        let flag = format!("--{name}");
        self.0.contains(&flag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_and_defaults() {
        let flags = Flags(["--n", "5", "--fast"].map(String::from).to_vec());
        assert_eq!(flags.get("n", 1), Ok(5));
        assert_eq!(flags.get("m", 7), Ok(7));
        assert!(flags.has("fast"));
        assert!(flags.get::<u32>("fast", 0).is_err());
    }
}
