//! microgpt.py's program on the autograd engine: the arena bound holds.

use microgpt_core::microgpt::{Moments, arena_nodes, run};
use microgpt_core::{Error, Libm, Node};

#[test]
fn the_arena_bound_covers_a_full_context() {
    // Names longer than the context fill every position in training and sampling.
    let mut docs = ["abcdefghijklmnopqrs", "zyxwvutsrqponmlkjih"];
    let nodes = arena_nodes(27);
    let mut arena = vec![Node::<f64>::EMPTY; nodes];
    let mut moments: Box<Moments> = bytemuck::zeroed_box();
    let mut out = String::new();
    run::<Libm, _, _>(&mut docs, 1, 3, &mut arena, &mut moments, &mut out).unwrap();
    assert_eq!(out.lines().count(), 3 + 3 + 2 + 20, "{out}");
    assert!(
        out.starts_with("num docs: 2\nvocab size: 27\nnum params: 4192\nstep    1 /    3 | loss "),
        "{out}"
    );

    // An arena too small for one training step is an error, not a panic.
    let mut small = vec![Node::<f64>::EMPTY; 60_000];
    let err = run::<Libm, _, _>(
        &mut docs,
        1,
        3,
        &mut small,
        &mut moments,
        &mut String::new(),
    );
    assert_eq!(err, Err(Error::ArenaFull { capacity: 60_000 }));
}
