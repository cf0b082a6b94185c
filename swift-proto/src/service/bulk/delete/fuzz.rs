//! Entry points for the fuzz targets (`fuzz/`, feature `fuzzing`): the bulk-delete
//! parsers that read network input.

use super::*;
use stackfed_http::from_stream;

/// A bulk-delete body, cut into frames at `cuts` (as the network delivers it): the names
/// or Swift's refusal, never a panic; never more names than `max`, each at most two
/// blocks long.
pub fn delete_list(body: &[u8], cuts: &[usize], max: u64) {
    let mut frames = Vec::new();
    let mut at = 0;
    for &c in cuts {
        let end = (at + c).min(body.len());
        frames.push(Bytes::copy_from_slice(&body[at..end]));
        at = end;
    }
    frames.push(Bytes::copy_from_slice(&body[at..]));
    let stream = futures::stream::iter(frames.into_iter().map(Ok::<_, std::io::Error>));
    let names = futures::executor::block_on(read_names(from_stream(stream), max));
    let names = match names {
        Ok(names) => names,
        Err(refused) => {
            let _ = refused.render(negotiate(None));
            return;
        }
    };
    {
        assert!(names.len() as u64 <= max, "more names than allowed");
        for n in &names {
            assert!(n.len() <= MAX_PATH_LENGTH * 2 + 2, "a name past the limit");
            let _ = is_object(n);
        }
    }
}

/// The `Accept` header of a bulk request.
pub fn accept(value: &[u8]) {
    let _ = negotiate(Some(value));
}
