package queue

// TaskActionFunc lets an ordinary function serve as a TaskAction.
type TaskActionFunc func(task Task) (TaskResult, TaskMessage)

// Do calls f(task).
func (f TaskActionFunc) Do(task Task) (TaskResult, TaskMessage) { return f(task) }

// Middleware wraps a TaskAction with behaviour that runs around it:
// logging, metrics, recovery, lifecycle webhooks.
type Middleware func(next TaskAction) TaskAction

// Chain applies middleware to action so that the first one listed is the
// outermost: Chain(a, m1, m2) runs m1, then m2, then a.
func Chain(action TaskAction, middleware ...Middleware) TaskAction {
	for i := len(middleware) - 1; i >= 0; i-- {
		action = middleware[i](action)
	}
	return action
}
