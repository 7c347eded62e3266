// What the Spark Streaming 3.5 peers of dstream's stateful benchmarks share (HashtagJob.scala,
// SessionsJob.scala): the generators of bench/src/lib.rs ported bit for bit, a checkpointable
// input DStream replaying pre-built cached RDDs, and the same max-sustained-rate search and
// judgement as the Rust side (bench/src/lib.rs `run_probe`, `judge`, `max_sustained`, `report`).
// Built and run by bench/spark/run-job.sh.

import java.io.File

import org.apache.spark.{SparkConf, SparkContext}
import org.apache.spark.rdd.RDD
import org.apache.spark.streaming.{Milliseconds, StreamingContext, Time}
import org.apache.spark.streaming.dstream.{DStream, InputDStream}
import org.apache.spark.streaming.scheduler.{StreamingListener, StreamingListenerBatchCompleted}
import scala.collection.mutable.ArrayBuffer
import scala.reflect.ClassTag

/** Replays pre-built cached RDDs in turn, each for `run` consecutive batches (1: round robin),
  * as dstream's `Replay` source does.
  *
  * Stateful operators need `ssc.checkpoint(dir)`, and then Spark serializes the DStream graph,
  * this stream included, at start and after every batch: the RDDs are `@transient` so they stay
  * out of it (this stream cannot be recovered from a checkpoint; a benchmark never does).
  *
  * Each batch gets a fresh narrow view of the cached RDD, not the RDD itself: Spark unpersists
  * an input stream's generated RDDs once they are older than its remember duration
  * (`DStream.clearMetadata`, `spark.streaming.unpersist`), which would drop the cache after the
  * first batches and make every later batch generate its input again. */
class Replay[T: ClassTag](ssc: StreamingContext, @transient private val rdds: Seq[RDD[T]], run: Int)
    extends InputDStream[T](ssc) {
  private var next = 0
  override def start(): Unit = {}
  override def stop(): Unit = {}
  override def compute(validTime: Time): Option[RDD[T]] = {
    val r = rdds(next / run % rdds.size)
    next += 1
    Some(r.mapPartitions(it => it, preservesPartitioning = true))
  }
}

/** Processing, scheduling and total delays, and failures, of completed batches. */
class Recorder extends StreamingListener {
  val processing = ArrayBuffer[Long]()
  val scheduling = ArrayBuffer[Long]()
  val total = ArrayBuffer[Long]()
  val failed = ArrayBuffer[Boolean]()
  override def onBatchCompleted(b: StreamingListenerBatchCompleted): Unit = synchronized {
    processing += b.batchInfo.processingDelay.getOrElse(-1L)
    scheduling += b.batchInfo.schedulingDelay.getOrElse(-1L)
    total += b.batchInfo.totalDelay.getOrElse(Long.MaxValue)
    failed += b.batchInfo.outputOperationInfos.values.exists(_.failureReason.isDefined)
  }
  def count: Int = synchronized { processing.size }
}

/** The outcome of running a job at one rate (bench/src/lib.rs `Probe`). */
case class Probe(rate: Int, sustained: Boolean, p50: Long, p99: Long, max: Long, firstDelay: Long,
    lastDelay: Long, p99Total: Long, rssMib: Double)

/** Options as `--name value` pairs (the Rust binaries' `Opts`). */
class Opts(args: Array[String], defaults: Map[String, String]) {
  private val given: Map[String, String] = {
    if (args.length % 2 != 0) throw new IllegalArgumentException(s"options come in pairs: ${args.mkString(" ")}")
    args.grouped(2).map(a => a(0).stripPrefix("--") -> a(1)).toMap
  }
  private val known = Set("rate", "reps", "batches", "warmup", "start", "max", "batch-ms", "judge", "check",
    "print-lines")
  given.keys.find(k => !known(k)).foreach(k => throw new IllegalArgumentException(s"unknown argument --$k"))
  private def get(k: String): Option[String] = given.get(k).orElse(defaults.get(k))
  def int(k: String): Int = get(k).get.toInt
  def intOpt(k: String): Option[Int] = get(k).map(_.toInt)
  val batchMs: Int = intOpt("batch-ms").getOrElse(1000)
  if (batchMs <= 0 || 1000 % batchMs != 0) throw new IllegalArgumentException("--batch-ms must divide 1000")
  val latency: Boolean = get("judge") match {
    case None | Some("throughput") => false
    case Some("latency") => true
    case Some(other) => throw new IllegalArgumentException("--judge is throughput or latency")
  }
  def batchesIn(secs: Int): Int = secs * 1000 / batchMs
  def perBatch(rate: Int): Int = (rate.toLong * batchMs / 1000).toInt
  /** Measured batches: `--batches`, or 30 and at least 10 s of batches. */
  def measured: Int = intOpt("batches").getOrElse(math.max(30, batchesIn(10)))
  def max: Int = intOpt("max").getOrElse(Int.MaxValue)
}

object Bench {
  // bench/src/lib.rs `mix`, `click_line`, `zipf_cdf`, `tag_rank`, `tweet_line`, with u64
  // arithmetic on Longs.
  def mix(x0: Long): Long = {
    var x = x0 + 0x9e3779b97f4a7c15L
    x = (x ^ (x >>> 30)) * 0xbf58476d1ce4e5b9L
    x = (x ^ (x >>> 27)) * 0x94d049bb133111ebL
    x ^ (x >>> 31)
  }

  def clickLine(i: Long): String = {
    val h = mix(i)
    val user = (i / 1000 + java.lang.Long.remainderUnsigned(h, 20000)) % 100000
    val page = java.lang.Long.remainderUnsigned(h >>> 20, 1000)
    s"u$user /p/$page"
  }

  val Tags = 1000

  /** Zipf(1) CDF over ranks 1..Tags: partial sums of 1.0/r in order, each divided by the total. */
  lazy val zipfCdf: Array[Double] = {
    val c = new Array[Double](Tags)
    var sum = 0.0
    var r = 1
    while (r <= Tags) { sum += 1.0 / r; c(r - 1) = sum; r += 1 }
    var k = 0
    while (k < Tags) { c(k) = c(k) / sum; k += 1 }
    c
  }

  /** The smallest rank k (1-based) with u < cdf(k - 1), u = top 53 bits of h in [0, 1). */
  def tagRank(h: Long): Int = {
    val u = (h >>> 11).toDouble / 9007199254740992.0 // 2^53
    val cdf = zipfCdf
    var lo = 0
    var hi = cdf.length
    while (lo < hi) {
      val mid = (lo + hi) >>> 1
      if (cdf(mid) <= u) lo = mid + 1 else hi = mid
    }
    lo + 1
  }

  def tweetLine(i: Long): String = {
    val sb = new java.lang.StringBuilder(64)
    var j = 0
    while (j < 10) {
      val h = mix(i * 16 + j)
      if (j > 0) sb.append(' ')
      if (java.lang.Long.remainderUnsigned(h, 10) == 0) sb.append("#t").append(tagRank(h))
      else sb.append('w').append((h >>> 8) % 5000)
      j += 1
    }
    sb.toString
  }

  val PoolLines = 4000000L
  val CheckpointRoot = new File("/tmp/dstream-bench-spark-checkpoints")

  /** What `--check` runs record, one entry per batch. */
  val outputs = ArrayBuffer[String]()
  def record(s: String): Unit = outputs.synchronized { outputs += s }

  def deleteRecursively(f: File): Unit = {
    if (f.isDirectory) Option(f.listFiles).foreach(_.foreach(deleteRecursively))
    f.delete()
  }

  def context(job: String): SparkContext = {
    val conf = new SparkConf().setAppName(s"dstream-$job-peer")
      .set("spark.serializer", "org.apache.spark.serializer.KryoSerializer")
      .set("spark.ui.enabled", "false")
    val sc = new SparkContext(conf)
    sc.setLogLevel("WARN")
    deleteRecursively(CheckpointRoot)
    sc
  }

  /** How a job's input is replayed: the lines of each slot, and for how many seconds of
    * consecutive batches each slot is replayed in turn (0: one batch, round robin). */
  case class Input(slots: Seq[Int => Long], runSecs: Int) {
    def run(o: Opts): Int = if (runSecs == 0) 1 else o.batchesIn(runSecs)
  }

  /** The two replay slots of dstream's `replay_batches`, round robin: slot b holds pool lines
    * (b * 7919 + k) mod 4,000,000 for k in 0 until the records of a batch. */
  val pooled = Input((0 until 2).map(b => (k: Int) => ((b * 7919L) % PoolLines + k) % PoolLines), 0)

  /** The sessions job's bands (bench/src/lib.rs `BANDS`, `band_batches`): slot b holds click
    * lines b * 20,000,000 + k, each replayed for 8 s of consecutive batches in turn. */
  val bands = Input((0 until 5).map(b => (k: Int) => b * 20000000L + k), 8)

  /** The replay slots of `records` lines, each in 2 contiguous partitions, cached. */
  def slots(sc: SparkContext, records: Int, line: Long => String, input: Input): Seq[RDD[String]] =
    input.slots.map { index =>
      val r = sc.parallelize(0 until records, 2).map(k => line(index(k))).cache()
      r.count()
      r
    }

  /** A job: whether it needs `ssc.checkpoint` (the stateful ones), and how it is built on the
    * input stream, given whether it runs a `--check` (then it `record`s a summary per batch). */
  case class Job(checkpoint: Boolean, build: Boolean => DStream[String] => Unit)

  private var probes = 0

  /** Runs `job` over the replayed slots for `warmup + batches` batches on the real clock (with
    * a fresh checkpoint directory if the job needs one) and judges the last `batches`. */
  def probe(sc: SparkContext, o: Opts, rate: Int, warmup: Int, batches: Int, line: Long => String,
      input: Input, checkpoint: Boolean, job: DStream[String] => Unit): Probe = {
    resetPeakRss()
    val rdds = slots(sc, o.perBatch(rate), line, input)
    probes += 1
    val dir = new File(CheckpointRoot, s"probe-$probes")
    deleteRecursively(dir)
    val ssc = new StreamingContext(sc, Milliseconds(o.batchMs))
    if (checkpoint) ssc.checkpoint(dir.getPath)
    val rec = new Recorder
    ssc.addStreamingListener(rec)
    job(new Replay(ssc, rdds, input.run(o)))
    ssc.start()
    while (rec.count < warmup + batches) Thread.sleep(10)
    ssc.stop(stopSparkContext = false, stopGracefully = false)
    val stillCached = rdds.forall(r => sc.getPersistentRDDs.contains(r.id))
    rdds.foreach(_.unpersist(blocking = true))
    deleteRecursively(dir)
    val (p, s, t, f) = rec.synchronized {
      (rec.processing.slice(warmup, warmup + batches).sorted, rec.scheduling.slice(warmup, warmup + batches),
        rec.total.slice(warmup, warmup + batches).sorted, rec.failed.slice(warmup, warmup + batches))
    }
    def pct(v: Seq[Long], q: Double) = v(math.round((v.size - 1) * q).toInt)
    val interval = o.batchMs.toLong
    // bench/src/lib.rs `judge`: the throughput rule, or with `--judge latency` the p99 total delay.
    val sustained = !f.exists(identity) && p.head >= 0 &&
      (if (o.latency) pct(t, 0.99) < 2 * interval
       else p.last < interval && s.last <= s.head + interval / 10)
    val r = Probe(rate, sustained, pct(p, 0.5), pct(p, 0.99), p.last, s.head, s.last, pct(t, 0.99), peakRssMib)
    println(f"  spark rate $rate%11d/s: ${if (sustained) "sustained" else "falls behind"} (p50 ${r.p50} ms, " +
      f"p99 ${r.p99} ms, max ${r.max} ms, delay ${r.firstDelay} -> ${r.lastDelay} ms, total p99 ${r.p99Total} ms, " +
      f"RSS ${r.rssMib}%.0f MiB)" + (if (stillCached) "" else " [input cache was dropped]"))
    r
  }

  /** Search for the highest sustained rate to within 5%: from `start`, step up by 1.1 while
    * sustained (never above `max`) or down while not, then bisect the last step
    * (bench/src/lib.rs `max_sustained`). */
  def maxSustained(start: Int, max: Int, run: Int => Probe): Probe = {
    def step(r: Int, up: Boolean): Int =
      math.min(math.max(if (up) (r * 1.1).toLong else (r / 1.1).toLong, 1L), max.toLong).toInt
    val first = run(math.min(start, max))
    var lo = 0
    var hi = 0
    var best = first
    if (first.sustained) {
      lo = first.rate
      var going = true
      while (going) {
        val next = step(lo, true)
        if (next <= lo) { hi = lo; going = false }
        else {
          val p = run(next)
          if (p.sustained) { lo = next; best = p } else { hi = next; going = false }
        }
      }
    } else {
      hi = first.rate
      var going = true
      while (going) {
        if (hi <= 1000) return best
        val next = step(hi, false)
        val p = run(next)
        if (p.sustained) { lo = next; best = p; going = false } else { hi = next; best = p }
      }
    }
    while ((hi - lo).toDouble > lo * 0.05) {
      val mid = lo + (hi - lo) / 2
      val p = run(mid)
      if (p.sustained) { lo = mid; best = p } else hi = mid
    }
    best
  }

  def peakRssMib: Double = {
    val src = scala.io.Source.fromFile("/proc/self/status")
    try src.getLines().find(_.startsWith("VmHWM:")).map(_.split("\\s+")(1).toDouble / 1024).getOrElse(Double.NaN)
    finally src.close()
  }

  /** Resets the peak RSS to the current RSS (bench/src/lib.rs `reset_peak_rss`), so that each
    * probe reports its own peak. */
  def resetPeakRss(): Unit =
    try {
      val w = new java.io.FileWriter("/proc/self/clear_refs")
      try w.write("5") finally w.close()
    } catch { case _: java.io.IOException => () }

  /** Runs the benchmark a job's `main` asks for: `--print-lines N`, `--check N --rate R`, one
    * probe at `--rate R`, or `--reps` searches from `--start` (bench/src/lib.rs `searches`).
    * `warmupSecs` is the job's warm-up before measuring. */
  def main(name: String, description: String, unit: String, args: Array[String],
      defaults: Map[String, String], warmupSecs: Int, line: Long => String, input: Input,
      job: Job): Unit = {
    val o = new Opts(args, defaults)
    o.intOpt("print-lines") match {
      case Some(n) =>
        ((0L until n.toLong) ++ Seq(3999999L, 123456789012L)).foreach(i => println(s"$i: ${line(i)}"))
      case None => run(name, description, unit, o, warmupSecs, line, input, job)
    }
  }

  private def run(name: String, description: String, unit: String, o: Opts, warmupSecs: Int,
      line: Long => String, input: Input, job: Job): Unit = {
    val sc = context(name)
    val warmup = o.intOpt("warmup").getOrElse(o.batchesIn(warmupSecs))
    val batches = o.measured
    def probeAt(rate: Int, w: Int, b: Int, check: Boolean) =
      probe(sc, o, rate, w, b, line, input, job.checkpoint, job.build(check))
    o.intOpt("check") match {
      case Some(n) =>
        val rate = o.intOpt("rate").getOrElse(throw new IllegalArgumentException("--check needs --rate"))
        probeAt(rate, 0, n, true)
        println(s"${name} after batch $n at $rate $unit/s: ${Bench.outputs(n - 1)}")
      case None =>
        val results = o.intOpt("rate") match {
          case Some(r) => Seq(probeAt(r, warmup, batches, false))
          case None =>
            // A fresh JVM's first batches pay for JIT compilation and heap growth: one probe of
            // 10 batches, not judged (the Rust side runs the same one).
            println("  spark warm-up probe (not judged)")
            probeAt(math.max(o.int("start") / 2, 1), 0, 10, false)
            val reps = o.int("reps")
            var start = o.int("start")
            (1 to reps).map { rep =>
              println(s"spark repetition $rep/$reps")
              val p = maxSustained(start, o.max, r => probeAt(r, warmup, batches, false))
              if (p.sustained) start = p.rate
              p
            }
        }
        val rates = results.map(p => if (p.sustained) p.rate else 0).sorted
        val median = rates(rates.size / 2)
        val at = results.find(p => p.rate == median || median == 0).get
        println(s"spark job: $name ($description), ${o.batchMs} ms batches, local[2], " +
          s"${if (o.latency) "latency" else "throughput"} rule, warm-up $warmup + $batches measured batches")
        println(s"spark max sustained rate per repetition: ${rates.mkString("[", ", ", "]")}")
        if (o.intOpt("rate").isEmpty && results.exists(_.rate >= o.max * 0.97))
          println(s"warning: a search ended at its ceiling ${o.max}: raise --max")
        println(f"spark median max sustained rate: ${median / 1e6}%.2fM $unit/s")
        println(f"spark at that rate: batch processing time p50 ${at.p50} ms, p99 ${at.p99} ms; total delay p99 " +
          f"${at.p99Total} ms; peak RSS ${at.rssMib}%.0f MiB")
        println(f"RESULT side=spark job=$name batch_ms=${o.batchMs} rate=$median p50_ms=${at.p50} p99_ms=${at.p99} " +
          f"p99_total_ms=${at.p99Total} rss_mib=${at.rssMib}%.0f")
    }
    sc.stop()
  }
}
