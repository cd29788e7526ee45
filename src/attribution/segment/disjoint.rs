//! Union-find over pixels or pieces with the Felzenszwalb-Huttenlocher bookkeeping (component size
//! and internal difference), shared by Felzenszwalb and SLIC's connectivity clean-up.

pub(super) struct DisjointSets {
    parent: Vec<u32>,
    pub(super) size: Vec<u32>,
    /// Int(C): largest edge weight inside the component's minimum spanning tree.
    pub(super) internal: Vec<f32>,
}

impl DisjointSets {
    pub(super) fn new(n: usize) -> Self {
        DisjointSets {
            parent: (0..n as u32).collect(),
            size: vec![1; n],
            internal: vec![0.0; n],
        }
    }

    pub(super) fn with_sizes(sizes: &[u32]) -> Self {
        let mut ds = DisjointSets::new(sizes.len());
        ds.size.copy_from_slice(sizes);
        ds
    }

    pub(super) fn find(&mut self, mut x: u32) -> u32 {
        // Path halving keeps trees flat without recursion.
        while self.parent[x as usize] != x {
            let gp = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = gp;
            x = gp;
        }
        x
    }

    /// Joins two distinct roots; the merged component's Int is the joining weight because edges
    /// arrive in ascending order, so it is the largest weight in the new spanning tree.
    pub(super) fn union_roots(&mut self, a: u32, b: u32, w: f32) -> u32 {
        let (big, small) = if self.size[a as usize] >= self.size[b as usize] {
            (a, b)
        } else {
            (b, a)
        };
        self.parent[small as usize] = big;
        self.size[big as usize] += self.size[small as usize];
        let int = self.internal[a as usize]
            .max(self.internal[b as usize])
            .max(w);
        self.internal[big as usize] = int;
        big
    }

    /// Walks `edges` in their (weakest-first) order and joins the two sides of every edge while
    /// either side is under `min_size` pixels, so a too-small piece joins the neighbour it is
    /// most similar to rather than an arbitrary one. One pass suffices: sizes only grow, so a
    /// piece still too small at the end has no neighbour left to join.
    pub(super) fn absorb_small(&mut self, edges: &[Edge], min_size: usize) {
        for e in edges {
            let ra = self.find(e.a);
            let rb = self.find(e.b);
            if ra != rb
                && ((self.size[ra as usize] as usize) < min_size
                    || (self.size[rb as usize] as usize) < min_size)
            {
                self.union_roots(ra, rb, e.w);
            }
        }
    }
}

/// A weighted edge between two pixels or pieces.
#[derive(Clone, Copy)]
pub(super) struct Edge {
    pub(super) w: f32,
    pub(super) a: u32,
    pub(super) b: u32,
}
