package sqlaction

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/esync/queue"
)

// bindArgs returns the values of params taken from the task's data, in order,
// ready to be sent as $1..$n. Values travel as bind parameters and are never
// written into the SQL text.
//
// JSON strings are sent as text, numbers as their exact decimal text (so a
// large integer id loses no digits), booleans as booleans, null as NULL, and
// objects and arrays as their JSON text (cast with ::jsonb to use them as
// such). PostgreSQL converts the text to the type the statement needs.
//
// A name absent from the data is an error naming every missing parameter; a
// field present with the value null binds NULL.
func bindArgs(task queue.Task, params []string) ([]any, error) {
	if len(params) == 0 {
		return nil, nil
	}
	data, _, err := task.ExactData()
	if err != nil {
		return nil, err
	}
	args := make([]any, len(params))
	var missing []string
	for i, name := range params {
		v, ok := data[name]
		if !ok {
			missing = append(missing, name)
			continue
		}
		arg, err := bindValue(v)
		if err != nil {
			return nil, fmt.Errorf("parameter %s: %w", name, err)
		}
		args[i] = arg
	}
	if len(missing) == 1 {
		return nil, fmt.Errorf("missing parameter %s: the task data has no field %q", missing[0], missing[0])
	}
	if len(missing) > 1 {
		return nil, fmt.Errorf("missing parameters %s: the task data has no such fields", strings.Join(missing, ", "))
	}
	return args, nil
}

// bindValue converts one decoded JSON value into a bind parameter.
func bindValue(v any) (any, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	case bool:
		return v, nil
	case map[string]any, []any:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		return string(b), nil
	default:
		return nil, fmt.Errorf("unsupported value of type %T", v)
	}
}
