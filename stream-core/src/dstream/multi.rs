//! Operations over several streams: union and the transforms (Spark's `UnionDStream` and
//! `TransformedDStream`), with Spark's errors when a parent has no batch.

use std::sync::Arc;

use super::{DStream, Owner};
use crate::batch::{Batch, Data};
use crate::context::StreamingContext;
use crate::error::{ContextError, Error, GraphError, Result};
use crate::time::{Duration, Time};

/// What a transform function may return: a batch, `Option<Batch>` (where `None` is Spark's
/// `null`, an error), or `Result<Batch, E>` (an `Err` fails the batch with its message).
pub trait TransformOutput<U> {
    /// The batch, or the error that fails the batch at `time`.
    fn into_batch(self, time: Time) -> Result<Batch<U>>;
}

impl<U> TransformOutput<U> for Batch<U> {
    fn into_batch(self, _: Time) -> Result<Batch<U>> {
        Ok(self)
    }
}

impl<U> TransformOutput<U> for Option<Batch<U>> {
    fn into_batch(self, _: Time) -> Result<Batch<U>> {
        self.ok_or_else(|| GraphError::TransformReturnedNone.into())
    }
}

impl<U, E: std::fmt::Display> TransformOutput<U> for std::result::Result<Batch<U>, E> {
    fn into_batch(self, time: Time) -> Result<Batch<U>> {
        self.map_err(|e| Error::user(time, e))
    }
}

/// Spark's check of a union's or transform's parents: they must all slide together.
fn slide_problem(slides: impl IntoIterator<Item = Duration>) -> Option<ContextError> {
    let mut slides = slides.into_iter();
    let first = slides.next()?;
    slides.any(|s| s != first).then(|| {
        ContextError::InvalidArgument(
            "Some of the DStreams have different slide durations".to_string(),
        )
    })
}

fn require<T>(b: Option<Batch<T>>, t: Time) -> Result<Batch<T>> {
    b.ok_or_else(|| GraphError::TransformParentMissing(t).into())
}

impl<T: Data> DStream<T> {
    /// The records of both streams, batch by batch (`union`): this stream's partitions, then
    /// `other`'s.
    pub fn union(&self, other: &DStream<T>) -> DStream<T> {
        union_of(
            &self.owner(),
            &[self.clone(), other.clone()],
            self.slide_duration(),
        )
    }

    /// Applies `f` to every batch (Spark's `transform`): any [`Batch`] operation, joins against
    /// a static batch, sorting, sampling.
    ///
    /// ```
    /// use stream_core::{Batch, HashPartitioner};
    /// use stream_core::testing::TestContext;
    /// let tc = TestContext::new();
    /// let spam = Batch::from_vec(vec![("spam", true)], 1);
    /// let words = tc.input_stream(vec![vec![("spam", 1), ("ham", 2)]]);
    /// let clean = words.transform(move |b| {
    ///     let spammy = b.clone().join(spam.clone(), HashPartitioner::new(2).unwrap()).keys().collect();
    ///     b.filter(move |(w, _)| !spammy.contains(w))
    /// });
    /// let out = tc.collect(&clean).unwrap();
    /// tc.run(1).unwrap();
    /// assert_eq!(out.batch(0), vec![("ham", 2)]);
    /// ```
    pub fn transform<U: Data, R: TransformOutput<U>>(
        &self,
        f: impl Fn(Batch<T>) -> R + Send + Sync + 'static,
    ) -> DStream<U> {
        self.transform_with_time(move |b, _| f(b))
    }

    /// `transform` whose function also receives the batch time.
    pub fn transform_with_time<U: Data, R: TransformOutput<U>>(
        &self,
        f: impl Fn(Batch<T>, Time) -> R + Send + Sync + 'static,
    ) -> DStream<U> {
        let f = Arc::new(f);
        transform_of(
            &self.owner(),
            std::slice::from_ref(self),
            self.slide_duration(),
            move |mut bs, t| {
                let b = bs.pop().expect("transform has exactly one parent");
                f(b, t)
            },
        )
    }

    /// Applies `f` to the batches of this stream and `other` of the same time
    /// (`transformWith`).
    pub fn transform_with<U: Data, V: Data, R: TransformOutput<V>>(
        &self,
        other: &DStream<U>,
        f: impl Fn(Batch<T>, Batch<U>) -> R + Send + Sync + 'static,
    ) -> DStream<V> {
        self.transform_with_named("transformWith", other, move |a, b, t| f(a, b).into_batch(t))
    }

    /// `transform_with` whose function also receives the batch time.
    pub fn transform_with_time2<U: Data, V: Data, R: TransformOutput<V>>(
        &self,
        other: &DStream<U>,
        f: impl Fn(Batch<T>, Batch<U>, Time) -> R + Send + Sync + 'static,
    ) -> DStream<V> {
        self.transform_with_named("transformWith", other, move |a, b, t| {
            f(a, b, t).into_batch(t)
        })
    }

    pub(crate) fn transform_with_named<U: Data, V: Data>(
        &self,
        name: &str,
        other: &DStream<U>,
        f: impl Fn(Batch<T>, Batch<U>, Time) -> Result<Batch<V>> + Send + Sync + 'static,
    ) -> DStream<V> {
        let (a, b) = (self.clone(), other.clone());
        let parents = vec![self.any(), other.any()];
        let problem = slide_problem([self.slide_duration(), other.slide_duration()]);
        DStream::new_node_checked(
            &self.owner(),
            name,
            parents,
            self.slide_duration(),
            problem,
            move |t| {
                let left = require(a.get_or_compute(t)?, t)?;
                let right = require(b.get_or_compute(t)?, t)?;
                f(left, right, t).map(Some)
            },
        )
    }
}

/// A union node of `streams` (at least one), owned by `owner`.
fn union_of<T: Data>(owner: &Owner, streams: &[DStream<T>], slide: Duration) -> DStream<T> {
    let parents = streams.iter().map(DStream::any).collect();
    let problem = slide_problem(streams.iter().map(DStream::slide_duration));
    let streams = streams.to_vec();
    DStream::new_node_checked(owner, "union", parents, slide, problem, move |t| {
        let mut batches = Vec::with_capacity(streams.len());
        for s in &streams {
            match s.get_or_compute(t)? {
                Some(b) => batches.push(b),
                None => return Err(GraphError::UnionParentMissing(t).into()),
            }
        }
        Ok(Some(Batch::union_all(batches)))
    })
}

/// A transform node over `streams`, owned by `owner`.
fn transform_of<T: Data, U: Data, R: TransformOutput<U>>(
    owner: &Owner,
    streams: &[DStream<T>],
    slide: Duration,
    f: impl Fn(Vec<Batch<T>>, Time) -> R + Send + Sync + 'static,
) -> DStream<U> {
    let parents = streams.iter().map(DStream::any).collect();
    let problem = slide_problem(streams.iter().map(DStream::slide_duration));
    let streams = streams.to_vec();
    DStream::new_node_checked(owner, "transform", parents, slide, problem, move |t| {
        let mut batches = Vec::with_capacity(streams.len());
        for s in &streams {
            batches.push(require(s.get_or_compute(t)?, t)?);
        }
        f(batches, t).into_batch(t).map(Some)
    })
}

/// The function of a [`StreamingContext::transform_streams`] node, over one time's batches.
#[doc(hidden)]
pub type TransformFn<B, U> = Box<dyn Fn(B, Time) -> Result<Batch<U>> + Send + Sync>;

/// Streams of different record types as one tuple, `(a, b)` up to `(a, b, c, d, e, f)` (each a
/// [`DStream`], cloned: cheap), for [`StreamingContext::transform_streams`].
pub trait StreamTuple: Send + Sync + 'static {
    /// The batches of one time, one per stream and in the same order: `(Batch<A>, Batch<B>)`.
    type Batches;

    /// The node of `transform_streams`: `f` over the streams' batches of each time.
    #[doc(hidden)]
    fn transform_node<U: Data>(
        self,
        ssc: &StreamingContext,
        f: TransformFn<Self::Batches, U>,
    ) -> DStream<U>;
}

macro_rules! stream_tuple {
    ($($T:ident $i:tt),+) => {
        impl<$($T: Data),+> StreamTuple for ($(DStream<$T>,)+) {
            type Batches = ($(Batch<$T>,)+);

            fn transform_node<U: Data>(
                self,
                ssc: &StreamingContext,
                f: TransformFn<Self::Batches, U>,
            ) -> DStream<U> {
                let slide = self.0.slide_duration();
                let problem = slide_problem([$(self.$i.slide_duration()),+]);
                let parents = vec![$(self.$i.any()),+];
                DStream::new_node_checked(&ssc.owner(), "transform", parents, slide, problem, move |t| {
                    let batches = ($(require(self.$i.get_or_compute(t)?, t)?,)+);
                    f(batches, t).map(Some)
                })
            }
        }
    };
}

stream_tuple!(A 0, B 1);
stream_tuple!(A 0, B 1, C 2);
stream_tuple!(A 0, B 1, C 2, D 3);
stream_tuple!(A 0, B 1, C 2, D 3, E 4);
stream_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);

impl StreamingContext {
    /// The records of all `streams`, batch by batch (Spark's `StreamingContext.union`).
    pub fn union<T: Data>(&self, streams: &[DStream<T>]) -> DStream<T> {
        let slide = streams
            .first()
            .map_or(self.batch_duration(), DStream::slide_duration);
        union_of(&self.owner(), streams, slide)
    }

    /// Applies `f` to the batches of all `streams` of the same time (Spark's
    /// `StreamingContext.transform`). The streams share a record type; for streams of different
    /// types use [`DStream::transform_with`].
    pub fn transform<T: Data, U: Data, R: TransformOutput<U>>(
        &self,
        streams: &[DStream<T>],
        f: impl Fn(Vec<Batch<T>>, Time) -> R + Send + Sync + 'static,
    ) -> DStream<U> {
        let slide = streams
            .first()
            .map_or(self.batch_duration(), DStream::slide_duration);
        transform_of(&self.owner(), streams, slide, f)
    }

    /// Applies `f` to the batches of the same time of streams of different record types, given
    /// as a tuple (Spark's `StreamingContext.transform(Seq[DStream[_]], ...)`, typed: `f` gets
    /// a tuple of batches, each with its own record type). The streams must slide together.
    ///
    /// ```
    /// use stream_core::testing::TestContext;
    /// use stream_core::HashPartitioner;
    /// let tc = TestContext::new();
    /// let clicks = tc.input_stream(vec![vec![("ann", 3), ("bob", 1)]]);
    /// let names = tc.input_stream(vec![vec![("ann", "Ann A.".to_string())]]);
    /// let vip = tc.input_stream(vec![vec!["ann"]]);
    /// let report = tc.context().transform_streams((clicks, names, vip), |(c, n, v), _time| {
    ///     let vips: Vec<&str> = v.collect();
    ///     c.join(n, HashPartitioner::new(2).unwrap())
    ///         .map(move |(k, (clicks, name))| (name, clicks, vips.contains(&k)))
    /// });
    /// let out = tc.collect(&report).unwrap();
    /// tc.run(1).unwrap();
    /// assert_eq!(out.batch(0), vec![("Ann A.".to_string(), 3, true)]);
    /// ```
    pub fn transform_streams<S: StreamTuple, U: Data, R: TransformOutput<U>>(
        &self,
        streams: S,
        f: impl Fn(S::Batches, Time) -> R + Send + Sync + 'static,
    ) -> DStream<U> {
        streams.transform_node(self, Box::new(move |b, t| f(b, t).into_batch(t)))
    }
}
