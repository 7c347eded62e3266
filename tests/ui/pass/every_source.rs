use dstream::prelude::*;

fn main() {
    let q: Queue<String> = Queue::new();
    let source = dstream::kafka::KafkaSource::strings("127.0.0.1:9").topics(["t"]).build().unwrap();
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1))
        ssc.socketTextStream("localhost", 9999).print()
        ssc.socket_text_stream("localhost", 9999).print()
        ssc.textFileStream("/tmp/in").print()
        ssc.textFiles("/tmp/in").print()
        ssc.text_files("/tmp/in").print()
        ssc.queueStream(q).print()
        ssc.rateStream(10).print()
        ssc.iteratorStream(1..10, 2).print()
        ssc.kafkaStream(source).print()
    };
}
