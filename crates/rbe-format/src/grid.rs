//! `BlockGrid`: how a `rows x cols` matrix is cut into `b x b` blocks (format.md 1): the block
//! count, row-major block numbering, each block's origin and valid extent (edge blocks are cut
//! short; their stored coefficients still cover the full `b x b`).

/// The block grid of one matrix. Blocks are numbered row-major: block `i` sits at block row
/// `i / block_cols` and block column `i % block_cols`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockGrid {
    rows: usize,
    cols: usize,
    block: usize,
    block_rows: usize,
    block_cols: usize,
}

/// Where one block lies in the matrix: its first row and column and its valid height and width
/// (`b` except at the bottom and right edges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockExtent {
    /// First matrix row the block covers.
    pub row0: usize,
    /// First matrix column the block covers.
    pub col0: usize,
    /// Valid rows, `1..=b`.
    pub height: usize,
    /// Valid columns, `1..=b`.
    pub width: usize,
}

impl BlockGrid {
    /// The grid of a `rows x cols` matrix in blocks of edge `block`.
    ///
    /// # Panics
    /// When `block` is zero.
    pub fn new(rows: usize, cols: usize, block: usize) -> Self {
        assert!(block > 0, "block edge must be positive");
        BlockGrid { rows, cols, block, block_rows: rows.div_ceil(block), block_cols: cols.div_ceil(block) }
    }
    /// Matrix rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Matrix columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Block edge `b`.
    pub fn block(&self) -> usize {
        self.block
    }
    /// Block rows, `ceil(rows / b)`.
    pub fn block_rows(&self) -> usize {
        self.block_rows
    }
    /// Block columns, `ceil(cols / b)`.
    pub fn block_cols(&self) -> usize {
        self.block_cols
    }
    /// `(block rows, block columns)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.block_rows, self.block_cols)
    }
    /// Number of blocks.
    pub fn count(&self) -> usize {
        self.block_rows * self.block_cols
    }
    /// `(block row, block column)` of block `i`.
    #[inline]
    pub fn position(&self, i: usize) -> (usize, usize) {
        (i / self.block_cols, i % self.block_cols)
    }
    /// Number of the block at block row `br`, block column `bc`.
    #[inline]
    pub fn index(&self, br: usize, bc: usize) -> usize {
        br * self.block_cols + bc
    }
    /// Valid rows of block row `br` (`b` except for the last one).
    #[inline]
    pub fn row_height(&self, br: usize) -> usize {
        (self.rows - br * self.block).min(self.block)
    }
    /// Valid columns of block column `bc` (`b` except for the last one).
    #[inline]
    pub fn col_width(&self, bc: usize) -> usize {
        (self.cols - bc * self.block).min(self.block)
    }
    /// Valid `(height, width)` of block `i`.
    #[inline]
    pub fn extent(&self, i: usize) -> (usize, usize) {
        let (br, bc) = self.position(i);
        (self.row_height(br), self.col_width(bc))
    }
    /// Origin and valid extent of block `i`.
    #[inline]
    pub fn block_extent(&self, i: usize) -> BlockExtent {
        let (br, bc) = self.position(i);
        BlockExtent {
            row0: br * self.block,
            col0: bc * self.block,
            height: self.row_height(br),
            width: self.col_width(bc),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_are_cut_short_and_indices_round_trip() {
        let g = BlockGrid::new(130, 64, 64);
        assert_eq!((g.dims(), g.count()), ((3, 1), 3));
        assert_eq!(g.extent(0), (64, 64));
        assert_eq!(g.extent(2), (2, 64));
        let g = BlockGrid::new(10, 19, 8);
        assert_eq!(g.dims(), (2, 3));
        for i in 0..g.count() {
            let (br, bc) = g.position(i);
            assert_eq!(g.index(br, bc), i);
            let e = g.block_extent(i);
            assert_eq!((e.row0, e.col0), (br * 8, bc * 8));
            assert_eq!((e.height, e.width), g.extent(i));
        }
        assert_eq!(g.extent(5), (2, 3));
    }
}
