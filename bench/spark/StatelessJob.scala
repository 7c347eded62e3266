// The stateless job on Spark Streaming 3.5 (Scala DStreams), the peer of
// bench/src/bin/stateless.rs: the same click lines (same generator, bit for bit), the same job,
// input from cached in-memory batches, the same max-sustained-rate search and judgement.
// Built and run by bench/spark/run-stateless.sh.

import org.apache.spark.{SparkConf, SparkContext}
import org.apache.spark.rdd.RDD
import org.apache.spark.streaming.{Seconds, StreamingContext, Time}
import org.apache.spark.streaming.dstream.InputDStream
import org.apache.spark.streaming.scheduler.{StreamingListener, StreamingListenerBatchCompleted}
import scala.collection.mutable.ArrayBuffer
import scala.reflect.ClassTag

object StatelessJob {
  // bench/src/lib.rs `mix` and `click_line`, with u64 arithmetic.
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

  val PoolLines = 4000000L

  /** Replays pre-built cached RDDs round robin, as dstream's `Replay` source does. */
  class Replay[T: ClassTag](ssc: StreamingContext, rdds: Seq[RDD[T]]) extends InputDStream[T](ssc) {
    private var next = 0
    override def start(): Unit = {}
    override def stop(): Unit = {}
    override def compute(validTime: Time): Option[RDD[T]] = {
      val r = rdds(next % rdds.size)
      next += 1
      Some(r)
    }
  }

  class Recorder extends StreamingListener {
    val processing = ArrayBuffer[Long]()
    val scheduling = ArrayBuffer[Long]()
    override def onBatchCompleted(b: StreamingListenerBatchCompleted): Unit = synchronized {
      processing += b.batchInfo.processingDelay.getOrElse(-1L)
      scheduling += b.batchInfo.schedulingDelay.getOrElse(-1L)
    }
    def count: Int = synchronized { processing.size }
  }

  /** Runs the job at `rate` records/s; returns (sustained, p50, p99, max, firstDelay, lastDelay). */
  def probe(sc: SparkContext, rate: Int, warmup: Int, batches: Int): (Boolean, Long, Long, Long, Long, Long) = {
    // The same batches as dstream's replay_batches: batch b starts at pool offset b * 7919.
    val rdds = (0 until 2).map { b =>
      val off = (b * 7919L) % PoolLines
      val r = sc.parallelize(0 until rate, 2).map(i => clickLine((off + i) % PoolLines)).cache()
      r.count()
      r
    }
    val ssc = new StreamingContext(sc, Seconds(1))
    val rec = new Recorder
    ssc.addStreamingListener(rec)
    val lines = new Replay(ssc, rdds)
    lines.map(_.split(" ")(1)).filter(u => !u.endsWith("0")).countByValue().foreachRDD(rdd => { rdd.count(); () })
    ssc.start()
    while (rec.count < warmup + batches) Thread.sleep(50)
    ssc.stop(stopSparkContext = false, stopGracefully = false)
    rdds.foreach(_.unpersist(blocking = true))
    val p = rec.processing.slice(warmup, warmup + batches).sorted
    val s = rec.scheduling.slice(warmup, warmup + batches)
    def pct(q: Double) = p(math.round((p.size - 1) * q).toInt)
    val sustained = p.last < 1000 && s.last <= s.head + 100
    (sustained, pct(0.5), pct(0.99), p.last, s.head, s.last)
  }

  def main(args: Array[String]): Unit = {
    val reps = if (args.length > 0) args(0).toInt else 3
    val warmup = if (args.length > 1) args(1).toInt else 5
    val batches = if (args.length > 2) args(2).toInt else 30
    val conf = new SparkConf().setAppName("dstream-stateless-peer")
      .set("spark.serializer", "org.apache.spark.serializer.KryoSerializer")
      .set("spark.ui.enabled", "false")
    val sc = new SparkContext(conf)
    sc.setLogLevel("WARN")
    def run(rate: Int) = {
      val r = probe(sc, rate, warmup, batches)
      println(f"  spark rate $rate%11d/s: ${if (r._1) "sustained" else "falls behind"} (p50 ${r._2} ms, p99 ${r._3} ms, max ${r._4} ms, delay ${r._5} -> ${r._6} ms)")
      r
    }
        // A fresh JVM's first batches pay for JIT compilation and heap growth: one throwaway probe
    // (not judged) so that the search starts on a warm JVM, as dstream's starts on warm caches.
    println("  spark warm-up probe (not judged)")
    probe(sc, 4000000, 10, 10)
    val results = (1 to reps).map { rep =>
      println(s"spark repetition $rep/$reps")
      var lo = 2000000
      var hi = 16000000
      var best = if (run(lo)._1) lo else 0
      while (best == 0 && lo > 100000) { hi = lo; lo /= 2; if (run(lo)._1) best = lo }
      while ((hi - lo).toDouble > lo * 0.03) {
        val mid = lo + (hi - lo) / 2
        if (run(mid)._1) { lo = mid; best = mid } else hi = mid
      }
      best
    }
    val sorted = results.sorted
    println(s"spark max sustained rate per repetition: ${results.mkString("[", ", ", "]")}")
    println(f"spark median max sustained rate: ${sorted(sorted.size / 2) / 1e6}%.2fM records/s")
    sc.stop()
  }
}
