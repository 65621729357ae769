//! Reading a forward pass's results as sentence-transformers users do: rows as slices,
//! cosine similarities between them.

use super::Output;

impl Output {
    /// The result rows (one per input, `cols` values each), in the batch's order.
    ///
    /// ```
    /// let out = sparq::model::Output::from_rows(&[vec![1.0, 0.0], vec![0.0, 2.0]]);
    /// let rows: Vec<&[f32]> = out.rows().collect();
    /// assert_eq!(rows, [&[1.0, 0.0][..], &[0.0, 2.0][..]]);
    /// assert_eq!(out.rows().len(), 2);
    /// ```
    pub fn rows(&self) -> Rows<'_> {
        Rows {
            out: self,
            next: 0..self.rows,
        }
    }

    /// Number of result rows (inputs).
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The rows as owned vectors.
    pub fn to_vecs(&self) -> Vec<Vec<f32>> {
        self.rows().map(<[f32]>::to_vec).collect()
    }

    /// The cosine similarity of every pair of rows: `m[i][j] = cosine(row i, row j)`.
    ///
    /// ```
    /// let out = sparq::model::Output::from_rows(&[vec![1.0, 0.0], vec![1.0, 1.0]]);
    /// let m = out.similarity();
    /// assert!((m[0][1] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    /// assert_eq!(m[0][1], m[1][0]);
    /// ```
    pub fn similarity(&self) -> Vec<Vec<f32>> {
        cosine_matrix(self.rows())
    }

    /// Results holding `rows` (all of one width), without probabilities or timings: for
    /// tests and for code that builds results itself.
    ///
    /// # Panics
    /// When the rows differ in width.
    pub fn from_rows(rows: &[Vec<f32>]) -> Output {
        let cols = rows.first().map_or(0, Vec::len);
        assert!(
            rows.iter().all(|r| r.len() == cols),
            "rows of different widths"
        );
        Output {
            rows: rows.len(),
            cols,
            values: rows.concat(),
            probabilities: None,
            gpu_seconds: None,
        }
    }
}

impl<'a> IntoIterator for &'a Output {
    type Item = &'a [f32];
    type IntoIter = Rows<'a>;

    fn into_iter(self) -> Rows<'a> {
        self.rows()
    }
}

/// The rows of an [`Output`], from [`Output::rows`] (or `for row in &output`).
#[derive(Clone, Debug)]
pub struct Rows<'a> {
    out: &'a Output,
    next: std::ops::Range<usize>,
}

impl<'a> Iterator for Rows<'a> {
    type Item = &'a [f32];

    fn next(&mut self) -> Option<&'a [f32]> {
        self.next.next().map(|i| self.out.row(i))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.next.size_hint()
    }
}

impl ExactSizeIterator for Rows<'_> {}

impl DoubleEndedIterator for Rows<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.next.next_back().map(|i| self.out.row(i))
    }
}

impl std::iter::FusedIterator for Rows<'_> {}

/// The cosine similarity of `a` and `b`: their dot product over the product of their
/// lengths, in [-1, 1]; 0 when either is all zeros (rather than NaN). sparq's encoders
/// normalise sentence vectors when the model asks for it, and the cosine of unit vectors is
/// their dot product, but this does not assume it.
///
/// ```
/// use sparq::model::cosine;
/// assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-6);
/// assert!((cosine(&[1.0, 0.0], &[-3.0, 0.0]) + 1.0).abs() < 1e-6);
/// assert_eq!(cosine(&[1.0, 0.0], &[0.0, 5.0]), 0.0);
/// assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
/// ```
///
/// # Panics
/// When `a` and `b` differ in length.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "cosine of vectors of different lengths");
    // In f64: a long vector's sums lose digits in f32.
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    let norms = (aa * bb).sqrt();
    if norms == 0.0 {
        return 0.0;
    }
    (ab / norms).clamp(-1.0, 1.0) as f32
}

/// The cosine similarity of every pair of `rows`: `m[i][j] = cosine(rows[i], rows[j])`,
/// symmetric, 1 on the diagonal (0 for an all-zero row).
///
/// ```
/// use sparq::model::cosine_matrix;
/// let m = cosine_matrix([&[1.0, 0.0][..], &[0.0, 1.0], &[1.0, 1.0]]);
/// assert_eq!(m.len(), 3);
/// assert_eq!(m[0][0], 1.0);
/// assert_eq!(m[0][1], 0.0);
/// assert!((m[2][0] - 0.5f32.sqrt()).abs() < 1e-6);
/// ```
///
/// # Panics
/// When the rows differ in length.
pub fn cosine_matrix<'a>(rows: impl IntoIterator<Item = &'a [f32]>) -> Vec<Vec<f32>> {
    let rows: Vec<&[f32]> = rows.into_iter().collect();
    let n = rows.len();
    let mut m = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in i..n {
            let c = if i == j {
                // Exactly 1, where rounding could give 0.99999994.
                f32::from(rows[i].iter().any(|&x| x != 0.0))
            } else {
                cosine(rows[i], rows[j])
            };
            m[i][j] = c;
            m[j][i] = c;
        }
    }
    m
}
