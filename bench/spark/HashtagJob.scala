// The hashtag job on Spark Streaming 3.5 (Scala DStreams), the peer of
// bench/src/bin/hashtag.rs: the same tweet lines (same generator, bit for bit), the same job,
// input from cached in-memory batches, the same max-sustained-rate search and judgement
// (BenchCommon.scala). Built and run by `bench/spark/run-job.sh hashtag`.

import org.apache.spark.streaming.Seconds
import org.apache.spark.streaming.StreamingContext._
import org.apache.spark.streaming.dstream.DStream

object HashtagJob {
  /** Top 10 by count, ties by tag (the Rust side's `top_by(10, (count, tag))`). */
  val byCount: Ordering[(String, Long)] = Ordering.by((kv: (String, Long)) => (kv._2, kv._1))

  def job(check: Boolean)(lines: DStream[String]): Unit = {
    val counts = lines.flatMap(_.split(" ")).filter(_.startsWith("#")).map((_, 1L))
      .reduceByKeyAndWindow(_ + _, _ - _, Seconds(30), lines.slideDuration, 2,
        (kv: (String, Long)) => kv._2 > 0)
    counts.foreachRDD { rdd =>
      val top = rdd.top(10)(HashtagJob.byCount)
      if (check) Bench.record(top.map { case (t, c) => s"$t:$c" }.mkString(" "))
    }
  }

  def main(args: Array[String]): Unit =
    Bench.main("hashtag",
      "flatMap/filter/map -> reduceByKeyAndWindow(+, -, 30 s, every batch, drop zeros) -> top 10", "lines",
      args, Map("reps" -> "3", "start" -> "4000000"), 35, Bench.tweetLine, Bench.pooled, Bench.Job(true, job))
}
