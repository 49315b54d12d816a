//! A secret string: redacted in `Debug` and `Display`, zeroized on drop.

use std::fmt;

use zeroize::Zeroizing;

/// A secret (token, key). Its text is reachable only through [`Secret::expose`]; formatting
/// prints `[redacted]`, and the memory is overwritten when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret text. Keep the borrow short and never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A form safe to show: the known prefix (up to the first 14 characters, only if they are
    /// the public `sk-ant-...` marker), and the length.
    pub fn redacted(&self) -> String {
        let prefix = ["sk-ant-api03-", "sk-ant-oat01-", "sk-ant-ort01-"]
            .into_iter()
            .find(|p| self.0.starts_with(p))
            .unwrap_or("");
        format!("{prefix}[redacted, {} chars]", self.0.chars().count())
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let s = Secret::new("sk-ant-oat01-TOPSECRETVALUE");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(
            format!("{:#?}", vec![s.clone()]),
            "[\n    Secret([redacted]),\n]"
        );
        assert_eq!(s.redacted(), "sk-ant-oat01-[redacted, 27 chars]");
        assert!(!Secret::new("plainvalue").redacted().contains("plain"));
        assert_eq!(s.expose(), "sk-ant-oat01-TOPSECRETVALUE");
    }
}
