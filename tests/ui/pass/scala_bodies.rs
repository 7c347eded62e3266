use dstream::prelude::*;

fn main() {
    let ssc = StreamingContext::new(Seconds(1)).unwrap();
    let lines = ssc.socket_text_stream("localhost", 9999);
    stream! {
        using ssc, lines
        val pairs = lines.map(l => (l.toUpperCase, l.length))
        pairs.transform(rdd => rdd.sortBy(_._2, false).map { case (w, n) => if (n > 3) (w, "long") else (w, "short") }).print()
        pairs.transform(rdd => rdd.clone().distinct().join(rdd.mapValues(_ * 2)).map(p => p._2 match { case (a, b) => a + b })).print()
        pairs.foreachRDD(rdd => { val byKey = rdd.countByKey(); if (byKey.isEmpty()) println!("none") else rdd.foreach(println) })
        pairs.map(p => s "${p._1} has ${p._2} letters").print()
        pairs.transform(rdd => rdd.sortBy(_._2, true, 4)).map(_._1.trim.to_string()).filter(_.nonEmpty).print()
    }
    .unwrap();
}
