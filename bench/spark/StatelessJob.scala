// The stateless job on Spark Streaming 3.5 (Scala DStreams), the peer of
// bench/src/bin/stateless.rs: the same click lines (same generator, bit for bit), the same job,
// input from cached in-memory batches, the same max-sustained-rate search and judgement
// (BenchCommon.scala). Built and run by `bench/spark/run-job.sh stateless`.

import org.apache.spark.streaming.StreamingContext._
import org.apache.spark.streaming.dstream.DStream

object StatelessJob {
  /** The urls counted in a batch, and the 3 largest by (count, url) (stateless.rs `summary`). */
  def summary(counts: Array[(String, Long)]): String = {
    val top = counts.sortBy(kv => (kv._2, kv._1))(Ordering[(Long, String)].reverse).take(3)
    s"urls ${counts.length} top3 ${top.map { case (u, c) => s"$u:$c" }.mkString(" ")}"
  }

  def job(check: Boolean)(lines: DStream[String]): Unit = {
    val counts = lines.map(_.split(" ")(1)).filter(u => !u.endsWith("0")).countByValue()
    counts.foreachRDD { rdd =>
      if (check) Bench.record(StatelessJob.summary(rdd.collect())) else rdd.count()
      ()
    }
  }

  def main(args: Array[String]): Unit =
    Bench.main("stateless", "map(url) -> filter -> countByValue", "lines", args,
      Map("reps" -> "3", "start" -> "7000000"), 5, Bench.clickLine, Bench.pooled,
      Bench.Job(false, job))
}
