//! A run is a function of the input alone: in the fuzz target's reused executor (one per
//! target, as `harness::fuzz::check_ops` keeps them) an input sets the state-feedback
//! counters, records the steps and finds the violations it does in a fresh one, whatever
//! ran before. Otherwise the fuzzer would keep inputs for noise left by the ones before
//! them, and a crash would not reproduce alone.
use harness::fuzz::{Campaign, Naive};
use harness::native::run::{executor, run_ops, Native};
use harness_core::feedback::Feedback;

#[test]
fn a_run_does_not_depend_on_the_inputs_before() {
    stagehand_cli::register();
    let campaign = Campaign::from_env().expect("the campaign's settings");
    let mut gen = Naive::new(7, 64);
    let mut reused: Vec<Option<Native>> = Vec::new();
    let (mut with_features, mut targets) = (0, std::collections::BTreeSet::new());
    for _ in 0..400 {
        let data: Vec<u8> = (0..1 + usize::from(gen.byte()) * 2).map(|_| gen.byte()).collect();
        let (config, ops) = campaign.decode(&data);
        let t = usize::from(config.target);
        targets.insert(t);
        let mut fresh = executor(config, true);
        fresh.feedback().families = Feedback::ALL;
        run_ops(&mut fresh, config, &ops);
        if reused.len() <= t {
            reused.resize_with(t + 1, || None);
        }
        let warm = reused[t].get_or_insert_with(|| executor(config, true));
        warm.feedback().families = Feedback::ALL;
        run_ops(warm, config, &ops);
        let (a, b) = (fresh.feedback().counters, warm.feedback().counters);
        let differ: Vec<(usize, u8, u8)> =
            (0..a.len()).filter(|&i| a[i] != b[i]).map(|i| (i, a[i], b[i])).collect();
        assert!(differ.is_empty(), "{ops:?} under {config:?}: (slot, fresh, reused) {differ:?}");
        assert_eq!(fresh.violations(), warm.violations(), "{ops:?}");
        assert!(fresh.steps() == warm.steps(), "{ops:?} under {config:?}: the steps differ");
        with_features += usize::from(a.iter().any(|&c| c != 0));
    }
    // The comparison means something only if the inputs set counters, on every target.
    assert!(with_features > 300, "only {with_features} of 400 inputs set a counter");
    assert!(targets.len() >= 2, "the inputs reached {targets:?} only");
}
