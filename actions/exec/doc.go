// Package execaction runs a configured program for each task, the way sonic
// and gordon ran scripts from a queue, without ever going through a shell.
//
// Usage:
//
//	push, err := execaction.New(execaction.Config{
//		Program:            "/usr/local/bin/push-customer",
//		Args:               []string{"--id={{customer_id}}", "--", "{{name}}"},
//		Env:                map[string]string{"CRM_REGION": "{{region}}"},
//		PassEnv:            []string{"HOME", "CRM_TOKEN"},
//		Timeout:            2 * time.Minute,
//		PermanentExitCodes: []int{2}, // the script's "bad input" status
//	})
//	if err != nil { ... }
//	manager.RegisterTaskHandler(push, "customer.push")
//
// A task {"customer_id": 42, "name": "Ann", "region": "eu"} then runs
// push-customer with the arguments --id=42, -- and Ann, CRM_REGION=eu in its
// environment, and the task as JSON on its standard input:
//
//	{"id":7,"name":"customer.push","key":"customer:42","data":{...},"attempt":1}
//
// # What reaches the program
//
// Arguments and environment variables come only from the templates in
// Config; {{field}} takes a field of the task data. Fields no template names
// are ignored (they still travel in the JSON on stdin, which the program
// parses as data). A template naming a field that is missing or null fails
// the task, as does a value with a NUL byte. Values are substituted once and
// passed as they are: each argument template is exactly one argument, and
// shell syntax in a value ($(…), ;, |, quotes) is just text. A bare {{field}}
// argument whose value starts with "-" is refused unless a literal "--"
// argument comes before it, so data cannot smuggle in an option.
//
// The worker's environment is not inherited. The program gets PATH, the
// variables listed in PassEnv that are set, the Env templates, and
// ESYNC_TASK_ID, ESYNC_TASK_NAME, ESYNC_TASK_KEY and ESYNC_TASK_ATTEMPT.
//
// # How a run ends
//
// Exit status 0 marks the task DONE; a status in PermanentExitCodes, or a
// program that cannot be started (not found, not executable), FAILED; any
// other status or a death by signal is retried. The message keeps the exit
// status and the last Config.OutputLimit bytes (default 4 KiB) of stderr and
// stdout, made safe to store (valid UTF-8, no NUL bytes).
//
// The program leads its own process group. On a timeout (Config.Timeout or
// the task's deadline) the whole group is killed — SIGKILL, or SIGTERM then
// SIGKILL after Config.KillGrace — and the task is retried. When the program
// exits, anything it left running in its group is killed as well. A process
// that leaves the group on purpose (setsid, a daemon) is beyond reach; the
// run then stops waiting for its output shortly after the program exits.
//
// The package works on Unix systems; elsewhere New returns an error.
package execaction
