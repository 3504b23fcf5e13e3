package anomaly

import "math"

// symEigen diagonalises the symmetric d×d matrix a (row-major; destroyed)
// with the cyclic Jacobi method (Golub & Van Loan, Matrix Computations,
// §8.5). On return vals holds the eigenvalues in descending order and the
// columns of vecs the matching unit eigenvectors. Jacobi is slow for large
// d but exact to rounding, simple and allocation-free, and devices here
// have tens of fields, not thousands.
func symEigen(a []float64, d int, vals, vecs []float64) {
	for i := range vecs[:d*d] {
		vecs[i] = 0
	}
	for i := 0; i < d; i++ {
		vecs[i*d+i] = 1
	}
	for sweep := 0; sweep < 50; sweep++ {
		off := 0.0
		diag := 0.0
		for p := 0; p < d; p++ {
			diag += a[p*d+p] * a[p*d+p]
			for q := p + 1; q < d; q++ {
				off += a[p*d+q] * a[p*d+q]
			}
		}
		if off <= 1e-22*diag || off == 0 {
			break
		}
		for p := 0; p < d-1; p++ {
			for q := p + 1; q < d; q++ {
				apq := a[p*d+q]
				if apq == 0 {
					continue
				}
				app, aqq := a[p*d+p], a[q*d+q]
				theta := (aqq - app) / (2 * apq)
				t := 1 / (math.Abs(theta) + math.Sqrt(theta*theta+1))
				if theta < 0 {
					t = -t
				}
				c := 1 / math.Sqrt(t*t+1)
				s := t * c
				// Rotate rows/columns p and q of a.
				for k := 0; k < d; k++ {
					akp, akq := a[k*d+p], a[k*d+q]
					a[k*d+p] = c*akp - s*akq
					a[k*d+q] = s*akp + c*akq
				}
				for k := 0; k < d; k++ {
					apk, aqk := a[p*d+k], a[q*d+k]
					a[p*d+k] = c*apk - s*aqk
					a[q*d+k] = s*apk + c*aqk
				}
				for k := 0; k < d; k++ {
					vkp, vkq := vecs[k*d+p], vecs[k*d+q]
					vecs[k*d+p] = c*vkp - s*vkq
					vecs[k*d+q] = s*vkp + c*vkq
				}
			}
		}
	}
	for i := 0; i < d; i++ {
		vals[i] = a[i*d+i]
	}
	// Selection sort by eigenvalue, descending, swapping vector columns.
	for i := 0; i < d; i++ {
		m := i
		for j := i + 1; j < d; j++ {
			if vals[j] > vals[m] {
				m = j
			}
		}
		if m != i {
			vals[i], vals[m] = vals[m], vals[i]
			for k := 0; k < d; k++ {
				vecs[k*d+i], vecs[k*d+m] = vecs[k*d+m], vecs[k*d+i]
			}
		}
	}
}
