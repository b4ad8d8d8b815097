//! microgpt's scalar autograd engine, on a fixed-capacity arena.
//!
//! Each [`Var`] is a node of a computation graph: a value, a gradient, and up to two
//! children with the local derivative towards each. The operations are exactly those
//! of microgpt's `Value` (add, mul, pow, log, exp, relu, and products and sums with
//! plain numbers), and [`Tape::backward`] visits the nodes in the reverse of the same
//! depth-first topological order, children in order, so that every gradient is summed
//! in the same order as in Python. With `f64` and the platform's maths that reproduces
//! microgpt.py bit for bit.
//!
//! The arena is a slice of [`Node`]s that the caller owns (a `static` array on a
//! microcontroller, a `Vec` on a host): `Tape::<f64>::NODE_BYTES` bytes each. Every
//! operation that adds a node returns [`Error::ArenaFull`] when the arena is full.
//!
//! ```
//! use microgpt_core::{Node, Tape};
//! let mut arena = [Node::<f64>::EMPTY; 16];
//! let mut t = Tape::<f64>::new(&mut arena);
//! let (a, b) = (t.leaf(2.0)?, t.leaf(3.0)?);
//! let y = t.mul(a, b)?;
//! let y = t.add(y, a)?; // y = a·b + a
//! t.backward(y)?;
//! assert_eq!((t.grad(a), t.grad(b)), (4.0, 2.0));
//! # Ok::<(), microgpt_core::Error>(())
//! ```

use core::marker::PhantomData;

use bytemuck::Zeroable;

use crate::error::Error;
use crate::float::{Float, Libm, Math};

/// A handle to a node of a [`Tape`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Zeroable)]
#[repr(transparent)]
pub struct Var(u32);

impl Var {
    /// The handle of the node at `index` (parameters are the first nodes of a tape).
    pub(crate) const fn from_index(index: usize) -> Var {
        Var(index as u32)
    }

    /// The node's index in the arena.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One scalar of the graph. Its fields are private; the arena only needs its size.
#[derive(Clone, Copy, Debug)]
pub struct Node<F> {
    data: F,
    grad: F,
    local: [F; 2],
    child: [u32; 2],
    /// Scratch of `backward`: the topological order and the depth-first stack share
    /// this one slot per node.
    slot: u32,
    arity: u8,
    /// 0: not visited; 1 + next child to visit while on the stack.
    mark: u8,
}

impl<F: Float> Node<F> {
    /// An unused node, to fill an arena.
    pub const EMPTY: Node<F> = Node {
        data: F::ZERO,
        grad: F::ZERO,
        local: [F::ZERO; 2],
        child: [0; 2],
        slot: 0,
        arity: 0,
        mark: 0,
    };
}

/// A computation graph on a caller-owned arena, with maths from `M`.
pub struct Tape<'a, F: Float, M: Math<F> = Libm> {
    nodes: &'a mut [Node<F>],
    len: usize,
    math: PhantomData<M>,
}

impl<'a, F: Float, M: Math<F>> Tape<'a, F, M> {
    /// Bytes of one node.
    pub const NODE_BYTES: usize = core::mem::size_of::<Node<F>>();

    /// An empty graph on `arena`. Arenas beyond `u32::MAX` nodes use only that many.
    pub fn new(arena: &'a mut [Node<F>]) -> Self {
        let cap = arena.len().min(u32::MAX as usize);
        Tape {
            nodes: &mut arena[..cap],
            len: 0,
            math: PhantomData,
        }
    }

    /// Nodes in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Nodes the arena holds.
    pub fn capacity(&self) -> usize {
        self.nodes.len()
    }

    /// Drops every node from `len` on, keeping the first `len` (typically the
    /// parameters) and their values and gradients.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The handle of the node at `index`, if it is in the graph. The first nodes of a
    /// tape are often the parameters, in order.
    pub fn var(&self, index: usize) -> Option<Var> {
        (index < self.len).then_some(Var(index as u32))
    }

    /// The value of a node.
    pub fn value(&self, v: Var) -> F {
        self.nodes[v.index()].data
    }

    /// Sets the value of a leaf (a parameter updated by an optimizer).
    pub fn set_value(&mut self, v: Var, x: F) {
        self.nodes[v.index()].data = x;
    }

    /// The gradient of a node after [`Tape::backward`].
    pub fn grad(&self, v: Var) -> F {
        self.nodes[v.index()].grad
    }

    /// Sets a gradient (microgpt zeroes each parameter's after its update).
    pub fn set_grad(&mut self, v: Var, g: F) {
        self.nodes[v.index()].grad = g;
    }

    fn push(&mut self, data: F, children: &[(Var, F)]) -> Result<Var, Error> {
        let id = self.len;
        let node = self
            .nodes
            .get_mut(id)
            .ok_or(Error::ArenaFull { capacity: id })?;
        let mut child = [0; 2];
        let mut local = [F::ZERO; 2];
        for (i, &(c, g)) in children.iter().enumerate() {
            child[i] = c.0;
            local[i] = g;
        }
        *node = Node {
            data,
            grad: F::ZERO,
            local,
            child,
            slot: 0,
            arity: children.len() as u8,
            mark: 0,
        };
        self.len += 1;
        Ok(Var(id as u32))
    }

    /// A new leaf: `Value(x)`.
    pub fn leaf(&mut self, x: F) -> Result<Var, Error> {
        self.push(x, &[])
    }

    /// `a + b`.
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var, Error> {
        self.push(self.value(a) + self.value(b), &[(a, F::ONE), (b, F::ONE)])
    }

    /// `a · b`.
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var, Error> {
        let (x, y) = (self.value(a), self.value(b));
        self.push(x * y, &[(a, y), (b, x)])
    }

    /// `a + c` for a plain number `c`.
    ///
    /// Python wraps `c` in a `Value` of its own; that leaf has no parents and never
    /// reaches a parameter, so leaving it out changes no gradient and no order.
    pub fn add_const(&mut self, a: Var, c: F) -> Result<Var, Error> {
        self.push(self.value(a) + c, &[(a, F::ONE)])
    }

    /// `a · c` for a plain number `c` (see [`Tape::add_const`]).
    pub fn mul_const(&mut self, a: Var, c: F) -> Result<Var, Error> {
        self.push(self.value(a) * c, &[(a, c)])
    }

    /// `-a`, which microgpt writes `a * -1`.
    pub fn neg(&mut self, a: Var) -> Result<Var, Error> {
        self.mul_const(a, -F::ONE)
    }

    /// `a ** e`, with local derivative `e · a ** (e - 1)`.
    pub fn pow(&mut self, a: Var, e: F) -> Result<Var, Error> {
        let x = self.value(a);
        self.push(M::pow(x, e), &[(a, e * M::pow(x, e - F::ONE))])
    }

    /// `log(a)`, with local derivative `1 / a`.
    pub fn log(&mut self, a: Var) -> Result<Var, Error> {
        let x = self.value(a);
        self.push(M::ln(x), &[(a, F::ONE / x)])
    }

    /// `exp(a)`.
    pub fn exp(&mut self, a: Var) -> Result<Var, Error> {
        let y = M::exp(self.value(a));
        self.push(y, &[(a, y)])
    }

    /// `relu(a) = max(0, a)`, with local derivative `a > 0`.
    pub fn relu(&mut self, a: Var) -> Result<Var, Error> {
        let x = self.value(a);
        let (y, g) = if x > F::ZERO {
            (x, F::ONE)
        } else {
            (F::ZERO, F::ZERO)
        };
        self.push(y, &[(a, g)])
    }

    /// Python's `sum(terms)`: it starts from the integer 0, so the first step is
    /// `terms[0] + 0`, a node of its own.
    pub fn sum(&mut self, terms: impl IntoIterator<Item = Var>) -> Result<Var, Error> {
        let mut terms = terms.into_iter();
        let first = terms.next().ok_or(Error::Usage("sum of no terms"))?;
        let mut acc = self.add_const(first, F::ZERO)?;
        for t in terms {
            acc = self.add(acc, t)?;
        }
        Ok(acc)
    }

    /// `sum(a_i * b_i for ...)`: microgpt's dot product, as in `linear`.
    pub fn dot(&mut self, pairs: impl IntoIterator<Item = (Var, Var)>) -> Result<Var, Error> {
        let mut acc: Option<Var> = None;
        for (a, b) in pairs {
            let p = self.mul(a, b)?;
            acc = Some(match acc {
                None => self.add_const(p, F::ZERO)?,
                Some(s) => self.add(s, p)?,
            });
        }
        acc.ok_or(Error::Usage("dot product of no terms"))
    }

    /// Backpropagates from `root`: sets its gradient to 1 and adds every node's
    /// gradient into its children's, in reverse topological order. Gradients add up
    /// across calls, as in microgpt; reset them with [`Tape::set_grad`].
    pub fn backward(&mut self, root: Var) -> Result<(), Error> {
        let n = self.len;
        if root.index() >= n {
            return Err(Error::Usage(
                "backward from a node that is not in the graph",
            ));
        }
        self.nodes[..n].iter_mut().for_each(|v| v.mark = 0);
        // Depth-first, without recursion: the stack grows down from the end of the slot
        // column while the topological order grows up from the start. A node is in at
        // most one of them, so together they fit in `n` slots.
        let (mut done, mut top) = (0, n - 1);
        self.nodes[top].slot = root.0;
        self.nodes[root.index()].mark = 1;
        while top < n {
            let v = self.nodes[top].slot as usize;
            let next = self.nodes[v].mark as usize - 1;
            if next < self.nodes[v].arity as usize {
                self.nodes[v].mark += 1;
                let c = self.nodes[v].child[next] as usize;
                if self.nodes[c].mark == 0 {
                    self.nodes[c].mark = 1;
                    top -= 1;
                    self.nodes[top].slot = c as u32;
                }
            } else {
                top += 1;
                self.nodes[done].slot = v as u32;
                done += 1;
            }
        }
        self.nodes[root.index()].grad = F::ONE;
        for i in (0..done).rev() {
            let v = self.nodes[i].slot as usize;
            let Node {
                grad,
                local,
                child,
                arity,
                ..
            } = self.nodes[v];
            for k in 0..arity as usize {
                self.nodes[child[k] as usize].grad += local[k] * grad;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_of_every_op() {
        let mut arena = [Node::<f64>::EMPTY; 64];
        let mut t = Tape::<f64>::new(&mut arena);
        let x = t.leaf(0.7).unwrap();
        // y = relu(x)·exp(x) + log(x) - x^-0.5·3 + x
        let r = t.relu(x).unwrap();
        let e = t.exp(x).unwrap();
        let re = t.mul(r, e).unwrap();
        let l = t.log(x).unwrap();
        let p = t.pow(x, -0.5).unwrap();
        let p3 = t.mul_const(p, 3.0).unwrap();
        let np = t.neg(p3).unwrap();
        let y = t.sum([re, l, np, x]).unwrap();
        t.backward(y).unwrap();
        let v: f64 = 0.7;
        let want = v.exp() + v * v.exp() + 1.0 / v + 1.5 * v.powf(-1.5) + 1.0;
        assert!((t.grad(x) - want).abs() < 1e-12, "{} vs {want}", t.grad(x));
        assert!((t.value(y) - (v * v.exp() + v.ln() - 3.0 / v.sqrt() + v)).abs() < 1e-12);
    }

    #[test]
    fn arena_full_is_an_error() {
        let mut arena = [Node::<f32>::EMPTY; 2];
        let mut t = Tape::<f32>::new(&mut arena);
        let a = t.leaf(1.0).unwrap();
        let _ = t.add_const(a, 1.0).unwrap();
        assert_eq!(t.exp(a), Err(Error::ArenaFull { capacity: 2 }));
        assert!(t.backward(Var(5)).is_err());
    }
}
