// The Spark Streaming 3.5 side of the differential test (tests/differential/SPEC.md): reads the
// cases (one JSON object a line), runs each in Spark Streaming on a manual clock, and writes one
// JSON object a line per case: every output batch with its partitions, or the case's error.
// Built and run by tests/differential/spark-runner.sh:
//   tests/differential/spark-runner.sh cases.jsonl out.jsonl
//
// It lives in a package under org.apache.spark.streaming, as Spark's own TestSuiteBase does, to
// reach the manual clock (`ssc.scheduler.clock`), `zeroTime` and `mustCheckpoint`.

package org.apache.spark.streaming.differential

import java.io.{File, PrintWriter}
import java.nio.charset.StandardCharsets
import java.nio.file.{Files, Paths}
import java.util.concurrent.{ConcurrentHashMap, ConcurrentLinkedQueue}

import scala.collection.JavaConverters._
import scala.util.control.NonFatal

import org.apache.spark.{SparkConf, SparkContext}
import org.apache.spark.rdd.RDD
import org.apache.spark.streaming.{Milliseconds, State, StateSpec, StreamingContext, Time}
import org.apache.spark.streaming.dstream.{DStream, InputDStream}
import org.apache.spark.streaming.scheduler.{StreamingListener, StreamingListenerBatchCompleted,
  StreamingListenerOutputOperationCompleted}
import org.apache.spark.util.ManualClock
import org.json4s._
import org.json4s.jackson.JsonMethods.{compact, parse, render}

/** A case's input stream, as Spark's `TestInputStream`: batch `i` (1-based) is `input(i - 1)`
  * in `numPartitions` contiguous slices (`makeRDD`), an empty RDD with as many partitions past
  * the end. The input is plain data, so the stream survives the graph's checkpoints. */
class CaseInput(ssc_ : StreamingContext, input: Vector[Vector[(String, Long)]], numPartitions: Int)
    extends InputDStream[(String, Long)](ssc_) {
  override def start(): Unit = {}
  override def stop(): Unit = {}
  override def compute(validTime: Time): Option[RDD[(String, Long)]] = {
    val index = ((validTime - zeroTime) / slideDuration - 1).toInt
    val batch = if (index >= 0 && index < input.size) input(index) else Vector.empty[(String, Long)]
    Some(context.sparkContext.makeRDD(batch, numPartitions))
  }
}

/** Where the output operation puts what it collects. A static place, so that the output's
  * closure captures nothing (Spark serializes it with the graph when it checkpoints). */
object Sink {
  /** (case, time, partitions); the case's number keeps a late batch of a timed out case apart. */
  val batches = new ConcurrentLinkedQueue[(Long, Long, Array[Array[(String, Long)]])]()
  def record(run: Long, rdd: RDD[(String, Long)], time: Time): Unit =
    batches.add((run, time.milliseconds, rdd.glom().collect()))
}

/** The batches completed, and the first failure of an output operation. */
class CaseListener extends StreamingListener {
  val completed: java.util.Set[Long] = ConcurrentHashMap.newKeySet[Long]()
  @volatile var failure: Option[String] = None
  override def onOutputOperationCompleted(e: StreamingListenerOutputOperationCompleted): Unit =
    synchronized { if (failure.isEmpty) failure = e.outputOperationInfo.failureReason }
  override def onBatchCompleted(e: StreamingListenerBatchCompleted): Unit =
    completed.add(e.batchInfo.batchTime.milliseconds)
}

/** A case's fields, read from its JSON object. */
class Case(val json: JValue) {
  import Case._
  val id: JValue = json \ "id"
  val batchMs: Long = long(json, "batch_ms")
  val batches: Long = long(json, "batches")
  val parallelism: Int = int(json, "parallelism")
  val input: Vector[Vector[(String, Long)]] = records(json \ "input")
  val inputPartitions: Int = int(json, "input_partitions")
  val input2: Vector[Vector[(String, Long)]] = records(json \ "input2")
  val input2Partitions: Int = intOpt(json, "input2_partitions").getOrElse(inputPartitions)
  val side: List[JValue] = list(json \ "side")
  val ops: List[JValue] = list(json \ "ops")
}

object Case {
  def field(j: JValue, k: String): JValue = j \ k match {
    case JNothing | JNull => throw new IllegalArgumentException(s"missing field $k in ${compact(render(j))}")
    case v => v
  }
  def longOpt(j: JValue, k: String): Option[Long] = j \ k match {
    case JNothing | JNull => None
    case JInt(n) => Some(n.toLong)
    case JLong(n) => Some(n)
    case v => throw new IllegalArgumentException(s"field $k is not an integer: ${compact(render(v))}")
  }
  def long(j: JValue, k: String): Long =
    longOpt(j, k).getOrElse(throw new IllegalArgumentException(s"missing field $k in ${compact(render(j))}"))
  def intOpt(j: JValue, k: String): Option[Int] = longOpt(j, k).map(_.toInt)
  def int(j: JValue, k: String): Int = long(j, k).toInt
  def bool(j: JValue, k: String): Boolean = field(j, k) match {
    case JBool(b) => b
    case v => throw new IllegalArgumentException(s"field $k is not a boolean: ${compact(render(v))}")
  }
  def string(j: JValue, k: String): String = field(j, k) match {
    case JString(s) => s
    case v => throw new IllegalArgumentException(s"field $k is not a string: ${compact(render(v))}")
  }
  def list(j: JValue): List[JValue] = j match {
    case JNothing | JNull => Nil
    case JArray(xs) => xs
    case v => throw new IllegalArgumentException(s"not a list: ${compact(render(v))}")
  }
  def records(j: JValue): Vector[Vector[(String, Long)]] = list(j).map(batch => list(batch).map {
    case JArray(List(JString(k), JInt(v))) => (k, v.toLong)
    case JArray(List(JString(k), JLong(v))) => (k, v)
    case r => throw new IllegalArgumentException(s"not a record [key, value]: ${compact(render(r))}")
  }.toVector).toVector
}

/** The operations of SPEC.md, each a DStream[(String, Long)] to a DStream[(String, Long)]. */
object Ops {
  import Case._
  type S = DStream[(String, Long)]
  val sum: (Long, Long) => Long = _ + _
  val diff: (Long, Long) => Long = _ - _

  def apply(ds: S, op: JValue, side: () => S, batchMs: Long): S = {
    def d(k: String) = Milliseconds(long(op, k) * batchMs)
    val parts = intOpt(op, "parts")
    string(op, "op") match {
      case "mapValues" =>
        val add = long(op, "add")
        ds.mapValues(_ + add)
      case "mapKey" =>
        val len = int(op, "len")
        ds.map { case (k, v) => (k.take(len), v) }
      case "filter" =>
        val mod = long(op, "mod")
        val rem = long(op, "rem")
        ds.filter { case (_, v) => v % mod == rem }
      case "flatMap" =>
        ds.flatMap { case (k, v) => if (v % 2 == 0) Seq((k, v), (k + "2", v / 2)) else Seq((k, v)) }
      case "repartition" =>
        ds.repartition(int(op, "n"))
      case "reduceByKey" =>
        parts match {
          case Some(p) => ds.reduceByKey(sum, p)
          case None => ds.reduceByKey(sum)
        }
      case "groupByKey" =>
        val g = parts match {
          case Some(p) => ds.groupByKey(p)
          case None => ds.groupByKey()
        }
        g.mapValues(_.sum)
      case "countByValue" =>
        val c = parts match {
          case Some(p) => ds.countByValue(p)
          case None => ds.countByValue()
        }
        c.map { case ((k, v), n) => (k + "=" + v, n) }
      case "count" =>
        ds.count().map(n => ("count", n))
      case "window" =>
        ds.window(d("w"), d("s"))
      case "reduceByKeyAndWindow" =>
        if (!bool(op, "inv")) {
          parts match {
            case Some(p) => ds.reduceByKeyAndWindow(sum, d("w"), d("s"), p)
            case None => ds.reduceByKeyAndWindow(sum, d("w"), d("s"))
          }
        } else {
          val filterFunc: ((String, Long)) => Boolean =
            if (bool(op, "filter")) (kv: (String, Long)) => kv._2 != 0 else null
          val p = parts.getOrElse(ds.context.sparkContext.defaultParallelism)
          ds.reduceByKeyAndWindow(sum, diff, d("w"), d("s"), p, filterFunc)
        }
      case "countByWindow" =>
        ds.countByWindow(d("w"), d("s")).map(n => ("count", n))
      case "countByValueAndWindow" =>
        val c = parts match {
          case Some(p) => ds.countByValueAndWindow(d("w"), d("s"), p)
          case None => ds.countByValueAndWindow(d("w"), d("s"))
        }
        c.map { case ((k, v), n) => (k + "=" + v, n) }
      case "reduceByWindow" =>
        val all = ds.map { case (_, v) => ("all", v) }
        val plus = (a: (String, Long), b: (String, Long)) => ("all", a._2 + b._2)
        if (bool(op, "inv")) {
          val minus = (a: (String, Long), b: (String, Long)) => ("all", a._2 - b._2)
          all.reduceByWindow(plus, minus, d("w"), d("s"))
        } else {
          all.reduceByWindow(plus, d("w"), d("s"))
        }
      case "updateStateByKey" =>
        val cap = long(op, "cap")
        val update = (vs: Seq[Long], st: Option[Long]) => {
          val n = st.getOrElse(0L) + vs.sum
          if (n > cap) None else Some(n)
        }
        parts match {
          case Some(p) => ds.updateStateByKey(update, p)
          case None => ds.updateStateByKey(update)
        }
      case "mapWithState" =>
        val cap = long(op, "cap")
        val f = (k: String, v: Option[Long], state: State[Long]) => {
          if (state.isTimingOut) (k, 1000000 + state.get)
          else {
            val n = state.getOption.getOrElse(0L) + v.getOrElse(0L)
            if (n > cap) { state.remove(); (k, 2000000 + n) } else { state.update(n); (k, n) }
          }
        }
        val spec = longOpt(op, "timeout") match {
          case Some(t) => StateSpec.function(f).timeout(Milliseconds(t * batchMs))
          case None => StateSpec.function(f)
        }
        val m = ds.mapWithState(spec)
        if (bool(op, "snapshots")) m.stateSnapshots() else m
      case "join" =>
        val other = side()
        string(op, "kind") match {
          case "inner" =>
            val j = parts match {
              case Some(p) => ds.join(other, p)
              case None => ds.join(other)
            }
            j.map { case (k, (a, b)) => (k, a * 100 + b) }
          case "leftOuter" =>
            val j = parts match {
              case Some(p) => ds.leftOuterJoin(other, p)
              case None => ds.leftOuterJoin(other)
            }
            j.map { case (k, (a, b)) => (k, a * 100 + b.getOrElse(99L)) }
          case "rightOuter" =>
            val j = parts match {
              case Some(p) => ds.rightOuterJoin(other, p)
              case None => ds.rightOuterJoin(other)
            }
            j.map { case (k, (a, b)) => (k, a.getOrElse(99L) * 100 + b) }
          case "fullOuter" =>
            val j = parts match {
              case Some(p) => ds.fullOuterJoin(other, p)
              case None => ds.fullOuterJoin(other)
            }
            j.map { case (k, (a, b)) => (k, a.getOrElse(99L) * 100 + b.getOrElse(99L)) }
          case other => throw new IllegalArgumentException(s"unknown join kind $other")
        }
      case "union" =>
        ds.union(side())
      case other => throw new IllegalArgumentException(s"unknown op $other")
    }
  }
}

object SparkRunner {
  val TimeoutMs = 60000L
  val runs = new java.util.concurrent.atomic.AtomicLong()

  def main(args: Array[String]): Unit = {
    if (args.length != 2) {
      System.err.println("usage: SparkRunner <cases.jsonl> <out.jsonl>")
      sys.exit(2)
    }
    val lines = Files.readAllLines(Paths.get(args(0)), StandardCharsets.UTF_8).asScala
      .map(_.trim).filter(_.nonEmpty)
    val cases = lines.map(l => parse(l))
    // spark.default.parallelism is fixed per SparkContext: one context per distinct value, in turn.
    val groups = cases.groupBy(c => Case.intOpt(c, "parallelism").getOrElse(2))
    val out = new PrintWriter(Files.newBufferedWriter(Paths.get(args(1)), StandardCharsets.UTF_8))
    val verbose = sys.env.get("SPARK_RUNNER_VERBOSE").exists(_.nonEmpty)
    val t0 = System.nanoTime()
    var errors = 0
    try {
      for (p <- groups.keys.toSeq.sorted) {
        val sc = newContext(p)
        try {
          for (c <- groups(p)) {
            val t = System.nanoTime()
            val result = runCase(sc, c)
            if (result \ "error" != JNothing) errors += 1
            out.println(compact(render(result)))
            out.flush()
            if (verbose) {
              System.err.println(f"case ${compact(render(c \ "id"))}: ${(System.nanoTime() - t) / 1e9}%.2f s" +
                (result \ "error" match { case JString(e) => s" error: $e"; case _ => "" }))
            }
          }
        } finally sc.stop()
      }
    } finally out.close()
    val secs = (System.nanoTime() - t0) / 1e9
    System.err.println(f"spark runner: ${cases.size} cases ($errors with an error) in $secs%.1f s, " +
      f"${secs / math.max(1, cases.size)}%.2f s a case")
  }

  def newContext(parallelism: Int): SparkContext = {
    val conf = new SparkConf()
      .setMaster(s"local[$parallelism]")
      .setAppName("dstream-differential")
      .set("spark.default.parallelism", parallelism.toString)
      .set("spark.streaming.clock", "org.apache.spark.util.ManualClock")
      .set("spark.ui.enabled", "false")
      .set("spark.ui.showConsoleProgress", "false")
      .set("spark.driver.host", "127.0.0.1")
    new SparkContext(conf)
  }

  def firstLine(e: Throwable): String =
    Option(e.getMessage).flatMap(_.linesIterator.find(_.trim.nonEmpty)).getOrElse(e.getClass.getName)

  /** Whether a stream of the pipeline requires a checkpoint directory. */
  def mustCheckpoint(ds: DStream[_]): Boolean = ds.mustCheckpoint || ds.dependencies.exists(mustCheckpoint)

  def runCase(sc: SparkContext, json: JValue): JValue = {
    val id = json \ "id" match { case JNothing => JNull; case v => v }
    try {
      val c = new Case(json)
      val batches = run(sc, c)
      JObject("id" -> id, "batches" -> JArray(batches.map { case (time, parts) =>
        JObject("time" -> JInt(time), "partitions" -> JArray(parts.toList.map(p =>
          JArray(p.toList.map { case (k, v) => JArray(List(JString(k), JInt(v))) }))))
      }))
    } catch {
      case NonFatal(e) => JObject("id" -> id, "error" -> JString(firstLine(e)))
    }
  }

  /** Runs a case: its output batches in time order, or throws its error. */
  def run(sc: SparkContext, c: Case): List[(Long, Array[Array[(String, Long)]])] = {
    Sink.batches.clear()
    val ssc = new StreamingContext(sc, Milliseconds(c.batchMs))
    var dir: File = null
    try {
      val in1 = new CaseInput(ssc, c.input, c.inputPartitions)
      var sideStream: DStream[(String, Long)] = null
      val side = () => {
        if (sideStream == null) {
          val in2 = new CaseInput(ssc, c.input2, c.input2Partitions)
          sideStream = c.side.foldLeft(in2: DStream[(String, Long)]) { (ds, op) =>
            Ops(ds, op, () => throw new IllegalArgumentException("the side stream cannot join or union"), c.batchMs)
          }
        }
        sideStream
      }
      val stream = c.ops.foldLeft(in1: DStream[(String, Long)])((ds, op) => Ops(ds, op, side, c.batchMs))
      val run = runs.incrementAndGet()
      stream.foreachRDD((rdd: RDD[(String, Long)], time: Time) => Sink.record(run, rdd, time))
      if (mustCheckpoint(stream)) {
        dir = Files.createTempDirectory("dstream-differential-").toFile
        ssc.checkpoint(dir.getPath)
      }
      val listener = new CaseListener
      ssc.addStreamingListener(listener)
      ssc.start()
      val end = c.batches * c.batchMs
      val slide = stream.slideDuration.milliseconds
      // The last time at which the output stream produces an RDD: `end` itself, as the spec
      // makes `batches` a multiple of the output's slide.
      val last = end / slide * slide
      ssc.scheduler.clock.asInstanceOf[ManualClock].advance(end)
      if (last > 0) {
        val deadline = System.currentTimeMillis() + TimeoutMs
        // The batch at `last` completes after every earlier one; polling the context throws the
        // first error that a batch (or the generation of its jobs) reported.
        while (!listener.completed.contains(last)) {
          if (ssc.awaitTerminationOrTimeout(5)) throw new IllegalStateException("the streaming context stopped")
          if (System.currentTimeMillis() > deadline) {
            throw new java.util.concurrent.TimeoutException(
              s"no output at $last ms after ${TimeoutMs / 1000} s")
          }
        }
        listener.failure.foreach { reason =>
          // An output operation failed: its exception reaches the context right after the
          // listener hears of it.
          ssc.awaitTerminationOrTimeout(2000)
          throw new RuntimeException(reason)
        }
        // An error in generating an earlier batch's jobs reached the context before the batch at
        // `last` completed.
        ssc.awaitTerminationOrTimeout(0)
      }
      Sink.batches.asScala.toList.filter(_._1 == run).map(b => (b._2, b._3)).sortBy(_._1)
    } finally {
      try ssc.stop(stopSparkContext = false) catch { case NonFatal(_) => }
      Sink.batches.clear()
      if (dir != null) deleteRecursively(dir)
    }
  }

  def deleteRecursively(f: File): Unit = {
    if (f.isDirectory) Option(f.listFiles()).foreach(_.foreach(deleteRecursively))
    f.delete()
  }
}
