//! The pure core: for each aggregate, `decide`-style functions from a state and a command
//! to events or a `DomainError`. No I/O, no clock, no randomness: ids and times arrive in
//! the command.

pub mod container;
pub mod fleet;
pub mod instance;
pub mod key;
pub mod mission_control;
pub mod org;
pub mod profile;
pub mod runtime;
pub mod validation;

/// What the user got wrong. Surfaces map these to their own envelopes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    Invalid(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    AlreadyExists(String),
    /// The resource is not in a state that allows the command.
    #[error("{0}")]
    Conflict(String),
    /// The caller's role does not allow this command on this resource.
    #[error("{0}")]
    Forbidden(String),
}

impl DomainError {
    pub fn invalid(message: impl Into<String>) -> Self {
        DomainError::Invalid(message.into())
    }
}

/// One field of a typed change payload: `after` when it differs from `before`.
pub(crate) fn diff<T: PartialEq + Clone>(before: &T, after: &T) -> Option<T> {
    (before != after).then(|| after.clone())
}

/// The items without repeats, in first-seen order. Lists come from request bodies and may
/// be as long as a body allows, so repeats are found with a set in one pass rather than by
/// scanning what was kept for every item.
pub fn first_seen<T: Eq + std::hash::Hash + Clone>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    items.into_iter().filter(|item| seen.insert(item.clone())).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn first_seen_keeps_the_first_of_each_in_order() {
        assert_eq!(super::first_seen(["b", "a", "b", "c", "a"]), vec!["b", "a", "c"]);
        let long: Vec<u32> = (0..100_000).chain(0..100_000).collect();
        assert_eq!(super::first_seen(long), (0..100_000).collect::<Vec<_>>());
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! given / when / then for decide functions.
    use std::fmt::Debug;

    use super::DomainError;

    pub struct Given<S>(pub Option<S>);

    pub fn given<S>(state: Option<S>) -> Given<S> {
        Given(state)
    }

    impl<S> Given<S> {
        pub fn when<E>(self, decide: impl FnOnce(Option<&S>) -> Result<Vec<E>, DomainError>) -> Then<E> {
            Then(decide(self.0.as_ref()))
        }
    }

    pub struct Then<E>(pub Result<Vec<E>, DomainError>);

    impl<E: Debug> Then<E> {
        pub fn then(self, check: impl FnOnce(&[E])) {
            check(&self.0.expect("the command was rejected"));
        }
        pub fn then_err(self, expected: DomainError) {
            assert_eq!(self.0.unwrap_err(), expected);
        }
    }
}
