//! Helpers for weir guest functions.
//!
//! Each guest generates its own bindings with `wit_bindgen::generate!`, so
//! helpers that touch the contract's types are macros, expanded where those
//! types are in scope.

/// Implements `apply-many` for a window function by cutting the batch into
/// its windows and calling the guest's own `apply` on each: the simplest
/// correct `apply-many`, for functions with no faster way to do many
/// windows at once. Use it inside `impl window::Guest for …`, with `Column`,
/// `Events`, `RowRange`, `RowsMany`, `Value` and `Window` in scope.
#[macro_export]
macro_rules! apply_many_by_window {
    () => {
        fn apply_many(
            keys: Vec<Value>,
            windows: Vec<Window>,
            ranges: Vec<RowRange>,
            events: Events,
        ) -> Result<RowsMany, String> {
            let mut out = RowsMany { ends: Vec::with_capacity(keys.len()), columns: Vec::new() };
            let mut total = 0u32;
            for ((key, window), range) in keys.into_iter().zip(windows).zip(&ranges) {
                let (start, end) = (range.start as usize, range.end as usize);
                if end < start || end > events.timestamps.len() {
                    return Err("a range does not fit the batch".into());
                }
                let columns = events
                    .columns
                    .iter()
                    .map(|c| match c {
                        Column::F64(v) => Column::F64(v[start..end].to_vec()),
                        Column::I64(v) => Column::I64(v[start..end].to_vec()),
                        Column::String(v) => Column::String(v[start..end].to_vec()),
                        Column::Bool(v) => Column::Bool(v[start..end].to_vec()),
                    })
                    .collect();
                let part = Events { timestamps: events.timestamps[start..end].to_vec(), columns };
                let rows = Self::apply(key, window, part)?;
                total += rows.len;
                out.ends.push(total);
                if out.columns.is_empty() {
                    out.columns = rows.columns;
                    continue;
                }
                for (all, more) in out.columns.iter_mut().zip(rows.columns) {
                    match (all, more) {
                        (Column::F64(a), Column::F64(m)) => a.extend(m),
                        (Column::I64(a), Column::I64(m)) => a.extend(m),
                        (Column::String(a), Column::String(m)) => a.extend(m),
                        (Column::Bool(a), Column::Bool(m)) => a.extend(m),
                        _ => return Err("windows returned different column types".into()),
                    }
                }
            }
            Ok(out)
        }
    };
}

/// Accumulator `i` of a buffer of several (`accumulators.bytes` and
/// `accumulators.ends`: accumulator `i` is bytes `[ends[i - 1], ends[i])`),
/// or `None` when the ends do not fit the bytes.
pub fn accumulator<'a>(bytes: &'a [u8], ends: &[u32], i: usize) -> Option<&'a [u8]> {
    let start = if i == 0 { 0 } else { *ends.get(i - 1)? as usize };
    let end = *ends.get(i)? as usize;
    bytes.get(start..end)
}

/// The maximum of `values` (`-inf` for none), eight at a time with wasm
/// SIMD: a scalar fold cannot vectorise (`f64::max`'s NaN rules), and every
/// loop iteration pays an epoch check under weir's call deadline. JSON has
/// no NaN, so `pmax`'s NaN handling does not matter here.
pub fn max_of(values: &[f64]) -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        use core::arch::wasm32::{f64x2_extract_lane, f64x2_pmax, f64x2_splat, v128, v128_load};
        let mut acc = [f64x2_splat(f64::NEG_INFINITY); 4];
        let chunks = values.chunks_exact(8);
        let rest = chunks.remainder();
        for chunk in chunks {
            for (k, lane) in acc.iter_mut().enumerate() {
                // SAFETY: `chunk` has 8 values, so 2 f64s at 2k are in
                // bounds; v128_load allows unaligned addresses.
                let v = unsafe { v128_load(chunk.as_ptr().add(2 * k) as *const v128) };
                *lane = f64x2_pmax(*lane, v);
            }
        }
        let m = f64x2_pmax(f64x2_pmax(acc[0], acc[1]), f64x2_pmax(acc[2], acc[3]));
        let mut max = f64x2_extract_lane::<0>(m).max(f64x2_extract_lane::<1>(m));
        for &x in rest {
            max = max.max(x);
        }
        max
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }
}
