// The JVM's side of stream-core's partitioner test (spark_places_keys_as_spark_does): hash
// codes and Spark's HashPartitioner placements of the same keys. After bench/spark/setup.sh:
//   jars="$(bench/spark/.venv/bin/python -c 'import pyspark, os; print(os.path.dirname(pyspark.__file__))')/jars/*"
//   javac -d /tmp/jh -cp "$jars" bench/spark/HashCodes.java && java -cp "$jars:/tmp/jh" HashCodes
import org.apache.spark.HashPartitioner;
import scala.Tuple2;
import scala.Tuple3;
public class HashCodes {
  public static void main(String[] a) {
    HashPartitioner p2 = new HashPartitioner(2), p7 = new HashPartitioner(7);
    String[] ss = {"california", "new york", "", "a", "héllo", "😀x", "user-17"};
    for (String s : ss) System.out.println("str " + s + " " + s.hashCode() + " " + p7.getPartition(s) + " " + p2.getPartition(s));
    int[] is = {0, 1, -1, 17, -2147483648, 123456789};
    for (int i : is) System.out.println("int " + i + " " + Integer.valueOf(i).hashCode() + " " + p7.getPartition(i));
    long[] ls = {0L, 3L, -1L, 5000000000L, -5000000000L, 2147483648L};
    for (long l : ls) System.out.println("long " + l + " " + Long.valueOf(l).hashCode() + " " + p7.getPartition(l));
    System.out.println("bool " + Boolean.TRUE.hashCode() + " " + Boolean.FALSE.hashCode());
    System.out.println("char " + Character.valueOf('é').hashCode());
    Object[] ts = { new Tuple2<>("a", 1), new Tuple2<>("california", 4L), new Tuple2<>(5000000000L, "x"), new Tuple2<>(true, 'c'), new Tuple3<>("a", 1, 2L), new Tuple2<>(new Tuple2<>("k", 1), "v") };
    for (Object t : ts) System.out.println("tuple " + t + " " + t.hashCode() + " " + p7.getPartition(t));
  }
}
