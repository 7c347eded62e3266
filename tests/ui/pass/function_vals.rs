use dstream::prelude::*;

fn updateFunction(newValues: Vec<i32>, runningCount: Option<i32>) -> Option<i32> {
    Some(newValues.iter().sum::<i32>() + runningCount.unwrap_or(0))
}

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1), std::env::temp_dir().join("dstream-ui-function-vals"))
        val lines = ssc.socketTextStream("localhost", 9999)
        val updateFunc = (values: Vec<i32>, state: Option<i32>) => {
            val current = values.sum;
            Some(current + state.getOrElse(0))
        }
        val mappingFunc = (word: &String, one: Option<i32>, state: &mut State<i32>) => {
            val sum = one.getOrElse(0) + state.getOption.getOrElse(0);
            state.update(sum);
            (word.clone(), sum)
        }
        val pairs = lines.map(w => (w, 1))
        pairs.updateStateByKey(updateFunc).print()
        pairs.updateStateByKey(updateFunction _).print()
        pairs.mapWithState(StateSpec.function(mappingFunc)).print()
    };
}
