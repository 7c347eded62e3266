// The sessions job on Spark Streaming 3.5 (Scala DStreams), the peer of
// bench/src/bin/sessions.rs (its default `--mode update`): the same click lines (same
// generator, bit for bit), the same job, input from cached in-memory batches, the same
// max-sustained-rate search and judgement (BenchCommon.scala). Built and run by
// `bench/spark/run-job.sh sessions`.

import org.apache.spark.HashPartitioner
import org.apache.spark.streaming.Time
import org.apache.spark.streaming.StreamingContext._
import org.apache.spark.streaming.dstream.DStream

/** One user's session: events, first and last batch time in ms. */
case class Session(events: Long, firstMs: Long, lastMs: Long)

object SessionsJob {
  val IdleMs = 30000L

  /** The session after `events` new events at batch time `now`: a session idle for more than
    * 30 s is over (None without events; a new one with them). As sessions.rs `advance`. */
  def advance(s: Option[Session], events: Long, now: Long): Option[Session] = {
    val live = s.filter(x => now - x.lastMs <= IdleMs)
    if (events == 0) live
    else Some(live match {
      case Some(x) => Session(x.events + events, x.firstMs, now)
      case None => Session(events, now, now)
    })
  }

  def update(t: Time, user: String, events: Seq[Long], s: Option[Session]): Option[Session] =
    advance(s, events.sum, t.milliseconds)

  /** Live sessions, their events, and the 3 largest by (events, user) with their span in ms. */
  def summary(all: Array[(String, Session)]): String = {
    val top = all.sortBy(kv => (kv._2.events, kv._1))(Ordering[(Long, String)].reverse).take(3)
      .map { case (u, s) => s"$u:${s.events}:${s.lastMs - s.firstMs}" }
    s"live ${all.length} events ${all.map(_._2.events).sum} top3 ${top.mkString(" ")}"
  }

  def job(check: Boolean)(lines: DStream[String]): Unit = {
    val sessions = lines.map(line => (line.split(" ")(0), 1L))
      .updateStateByKey(SessionsJob.update _, new HashPartitioner(2), true, None)
    sessions.foreachRDD { rdd =>
      if (check) Bench.record(SessionsJob.summary(rdd.collect())) else rdd.count()
      ()
    }
  }

  def main(args: Array[String]): Unit =
    Bench.main("sessions", "(user, 1) -> updateStateByKey(sessions, drop after 30 s idle) -> count",
      "events", args,
      Map("reps" -> "3", "start" -> "1800000"), 35, Bench.clickLine, Bench.bands, Bench.Job(true, job))
}
