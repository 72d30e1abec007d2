//! How a document travels and how its arrival is reported: the Secret key
//! the operator writes it under, the Pod condition a proxy sets once it
//! serves it, and the `generation N` that every message of that condition
//! starts with, so that the operator can tell which generation is live.
//! Both sides use these, so neither keeps a copy that could drift.

use std::fmt;

/// The key of the config Secret that holds the encoded document.
pub const CONFIG_SECRET_KEY: &str = "config";

/// The Pod condition (and readiness gate) a proxy owns: True once a
/// generation is live with every listener bound, False with a reason
/// otherwise.
pub const CONFIG_APPLIED_CONDITION: &str = "gateway.portcullis.io/ConfigApplied";

/// The head of a `ConfigApplied` message about one generation; displays as
/// `generation N`, and [`Generation::of`] reads it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(pub u64);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "generation {}", self.0)
    }
}

impl Generation {
    /// The generation a `ConfigApplied` message starts with, if any.
    pub fn of(message: &str) -> Option<u64> {
        let digits = message.strip_prefix("generation ")?;
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        digits[..end].parse().ok()
    }

    /// The message of a proxy that keeps serving `head`'s generation after
    /// refusing this one: `<head>; generation N refused: <error>`.
    pub fn refused_while_serving(self, head: &str, error: &str) -> String {
        format!("{head}{REFUSED_SEPARATOR}{self}{REFUSED_SUFFIX}{error}")
    }

    /// The generation a message of [`Generation::refused_while_serving`]
    /// says was refused, if any.
    pub fn refused_in(message: &str) -> Option<u64> {
        let (_, rest) = message.split_once(REFUSED_SEPARATOR)?;
        let generation = Generation::of(rest)?;
        rest.strip_prefix(&Generation(generation).to_string())?
            .starts_with(REFUSED_SUFFIX)
            .then_some(generation)
    }
}

const REFUSED_SEPARATOR: &str = "; ";
const REFUSED_SUFFIX: &str = " refused: ";

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn messages_without_a_generation_name_none() {
        for message in [
            "",
            "generation",
            "generation x",
            "config Secret gw not found",
        ] {
            assert_eq!(Generation::of(message), None, "{message:?}");
        }
        assert_eq!(
            Generation::of("generation 7 applied: 2 listener(s)"),
            Some(7)
        );
        assert_eq!(
            Generation::of("generation 8: listener https: in use"),
            Some(8)
        );
    }

    #[test]
    fn a_refusal_while_serving_names_both_generations() {
        let message = Generation(8).refused_while_serving(
            "generation 7 applied: 2 listener(s) serving",
            "listener https: no key; see generation 9 refused: later",
        );
        assert_eq!(
            message,
            "generation 7 applied: 2 listener(s) serving; generation 8 refused: listener https: no key; see generation 9 refused: later"
        );
        assert_eq!(Generation::of(&message), Some(7));
        assert_eq!(Generation::refused_in(&message), Some(8));
        for plain in [
            "generation 7 applied: 2 listener(s) serving",
            "generation 7: listener web: Address in use",
            "generation 7 applied; refused: garbage",
        ] {
            assert_eq!(Generation::refused_in(plain), None, "{plain}");
        }
    }

    proptest! {
        #[test]
        fn a_refused_generation_reads_back(serving in any::<u64>(), refused in any::<u64>(), error in "[ :;a-z0-9]{0,40}") {
            let head = format!("{} applied: 1 listener(s) serving", Generation(serving));
            let message = Generation(refused).refused_while_serving(&head, &error);
            prop_assert_eq!(Generation::of(&message), Some(serving));
            prop_assert_eq!(Generation::refused_in(&message), Some(refused));
        }

        #[test]
        fn what_is_written_reads_back(generation in any::<u64>(), rest in "[ :;a-z0-9]{0,40}") {
            let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            let message = format!("{}{rest}", Generation(generation));
            prop_assert_eq!(Generation::of(&message), Some(generation));
        }
    }
}
