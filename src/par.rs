//! Ordered parallel map over a slice on all cores (scoped threads, no runtime).
//! Results come back in input order, so callers stay deterministic.

/// `f` over every item, on up to as many threads as there are cores, in pieces of at
/// least `min_chunk` items (small inputs stay on one thread). Each thread takes the next
/// piece when it is done with one: items cost unlike amounts (a render of 100
/// applications' files, or of one; a folder made or already there), and a fixed share
/// per thread left one core idle for a third of a 100,000-application render.
pub fn map<T: Sync, R: Send>(items: &[T], min_chunk: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads();
    let min_chunk = min_chunk.max(1);
    if threads == 1 || items.len() <= min_chunk {
        return items.iter().map(&f).collect();
    }
    // Eight pieces a thread: enough to even out, few enough to cost nothing.
    let piece = items.len().div_ceil(threads * 8).max(min_chunk);
    let pieces = items.len().div_ceil(piece);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (f, next) = (&f, &next);
    let mut done: Vec<(usize, Vec<R>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.min(pieces))
            .map(|_| {
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= pieces {
                            return mine;
                        }
                        let part = &items[i * piece..((i + 1) * piece).min(items.len())];
                        mine.push((i, part.iter().map(f).collect::<Vec<_>>()));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker thread panicked"))
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().flat_map(|(_, part)| part).collect()
}

/// The threads a map uses: the cores, at most 8. Asked once: the standard library reads
/// the cgroup's CPU quota from files on each call, a cost the daemon's small maps (one
/// changed claim file) would pay several times per push.
pub fn threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_order() {
        for n in [0, 1, 15, 16, 17, 100, 10_000] {
            let items: Vec<u32> = (0..n).collect();
            for min in [0, 1, 16, 4096] {
                let out = super::map(&items, min, |x| x * 2);
                assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
            }
        }
        assert!(super::map(&[] as &[u32], 16, |x| *x).is_empty());
    }
}
