//go:build unix

package execaction_test

import (
	"fmt"
	"log"

	"github.com/esync/queue"
	execaction "github.com/esync/queue/actions/exec"
)

func ExampleNew() {
	action, err := execaction.New(execaction.Config{
		Program: "echo",
		Args:    []string{"--id={{customer_id}}", "--", "{{name}}"},
	})
	if err != nil {
		log.Fatal(err)
	}
	task := queue.Task{Name: "customer.push", Key: "customer:42",
		RawData: []byte(`{"customer_id": 42, "name": "Ann; rm -rf / $(reboot)"}`)}
	result, message := action.Do(task)
	fmt.Println(result)
	fmt.Println(message)
	// Output:
	// SUCCESS
	// exit status 0
	// --- stdout ---
	// --id=42 -- Ann; rm -rf / $(reboot)
}

func ExampleAction_Do_stdin() {
	// The program reads the task as one line of JSON on its standard input.
	action, err := execaction.New(execaction.Config{Program: "cat"})
	if err != nil {
		log.Fatal(err)
	}
	_, message := action.Do(queue.Task{ID: 7, Name: "customer.push", Key: "customer:42", Attempt: 1,
		RawData: []byte(`{"customer_id": 42}`)})
	fmt.Println(message)
	// Output:
	// exit status 0
	// --- stdout ---
	// {"id":7,"name":"customer.push","key":"customer:42","data":{"customer_id":42},"attempt":1}
}

func ExampleConfig_permanentExitCodes() {
	// Exit status 1 means "bad input" for this program: retrying is useless.
	action, err := execaction.New(execaction.Config{Program: "false", PermanentExitCodes: []int{1}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(action.Do(queue.Task{Name: "customer.push", Key: "customer:42"}))

	// A field the templates need but the task lacks fails before anything runs.
	action, err = execaction.New(execaction.Config{Program: "echo", Args: []string{"--id={{customer_id}}"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(action.Do(queue.Task{Name: "customer.push", Key: "customer:42", RawData: []byte(`{"id": 42}`)}))
	// Output:
	// ERROR exit status 1 (permanent)
	// ERROR argument 1: field customer_id: missing from the task data
}
