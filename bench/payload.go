package main

// noopArgs is the payload of every benchmark task and job, the same JSON on
// both sides: {"num": n}.
type noopArgs struct {
	Num int `json:"num"`
}

// Kind names the job for River.
func (noopArgs) Kind() string { return "noop" }

// noopTaskName is the esync task name of the benchmark tasks.
const noopTaskName = "noop"
