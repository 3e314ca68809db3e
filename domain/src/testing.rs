//! Given/when/then for decisions: `given([events]).when(|state| state.decide(..)).then([events])`.

use std::fmt::Debug;

use crate::aggregate::Aggregate;
use crate::error::DomainError;

/// The state folded from some past events.
#[derive(Debug)]
pub struct Given<A>(A);

/// Folds `events` into a fresh aggregate.
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let events: Vec<A::Event> = events.into_iter().collect();
    Given(A::fold(&events))
}

impl<A: Aggregate> Given<A> {
    /// Runs a decision against the folded state.
    pub fn when<T>(self, decide: impl FnOnce(&A) -> Result<T, DomainError>) -> Then<T> {
        Then(decide(&self.0))
    }
}

/// The outcome of a decision, to be checked.
#[derive(Debug)]
pub struct Then<T>(Result<T, DomainError>);

impl<T: Debug + PartialEq> Then<T> {
    /// Asserts the decision produced exactly `expected`.
    #[track_caller]
    pub fn then(self, expected: T) {
        match self.0 {
            Ok(actual) => assert_eq!(actual, expected),
            Err(error) => panic!("expected {expected:?}, but the decision failed: {error}"),
        }
    }

    /// Asserts the decision was refused with `expected`.
    #[track_caller]
    pub fn then_err(self, expected: DomainError) {
        match self.0 {
            Ok(actual) => {
                panic!("expected the error {expected:?}, but the decision produced {actual:?}")
            }
            Err(error) => assert_eq!(error, expected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::org::{Org, OrgEvent};
    use crate::OrgId;

    #[test]
    #[should_panic(expected = "but the decision failed")]
    fn then_fails_when_the_decision_is_refused() {
        given::<Org>([])
            .when(|o| o.delete(OrgId::from_uuid(uuid::Uuid::nil())))
            .then(vec![]);
    }

    #[test]
    #[should_panic(expected = "but the decision produced")]
    fn then_err_fails_when_the_decision_succeeds() {
        given::<Org>([])
            .when(|o| Ok::<_, DomainError>(o.is_active()))
            .then_err(DomainError::SlugTaken { slug: "x".into() });
    }

    #[test]
    #[should_panic(expected = "assertion `left == right` failed")]
    fn then_fails_when_other_events_were_decided() {
        given::<Org>([])
            .when(|o| {
                o.create(
                    OrgId::from_uuid(uuid::Uuid::nil()),
                    crate::Name::parse("A").expect("valid name"),
                    crate::OrgSlug::parse("ab").expect("valid slug"),
                )
            })
            .then(vec![OrgEvent::OrgDeleted]);
    }
}
