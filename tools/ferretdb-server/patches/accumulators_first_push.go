// Added to FerretDB v1.24.2 by tools/ferretdb-server/build: the $first and $push
// accumulators of $group, which that version lacks ("not implemented yet"). The previous
// system (slivka 0.8.5b7) needs both, and the benchmark runs it against this server.
// Supported arguments: "$field.path", "$$CURRENT" / "$$ROOT", literals, and documents of
// those (evaluated field by field).

package accumulators

import (
	"errors"
	"strings"

	"github.com/FerretDB/FerretDB/internal/handler/common/aggregations"
	"github.com/FerretDB/FerretDB/internal/handler/handlererrors"
	"github.com/FerretDB/FerretDB/internal/types"
	"github.com/FerretDB/FerretDB/internal/util/iterator"
	"github.com/FerretDB/FerretDB/internal/util/lazyerrors"
)

// evaluate returns the value of an accumulator argument for one document; false when
// the field it names is missing.
func evaluate(arg any, doc *types.Document) (any, bool, error) {
	switch arg := arg.(type) {
	case string:
		if arg == "$$CURRENT" || arg == "$$ROOT" {
			return doc, true, nil
		}

		if !strings.HasPrefix(arg, "$") {
			return arg, true, nil
		}

		expression, err := aggregations.NewExpression(arg, nil)
		if err != nil {
			return nil, false, err
		}

		value, err := expression.Evaluate(doc)
		if err != nil {
			return nil, false, nil
		}

		return value, true, nil
	case *types.Document:
		out := types.MakeDocument(arg.Len())
		iter := arg.Iterator()
		defer iter.Close()

		for {
			key, value, err := iter.Next()
			if errors.Is(err, iterator.ErrIteratorDone) {
				break
			}

			if err != nil {
				return nil, false, lazyerrors.Error(err)
			}

			field, found, err := evaluate(value, doc)
			if err != nil {
				return nil, false, err
			}

			if found {
				out.Set(key, field)
			}
		}

		return out, true, nil
	default:
		return arg, true, nil
	}
}

func unary(name string, args []any) error {
	if len(args) != 1 {
		return handlererrors.NewCommandErrorMsgWithArgument(
			handlererrors.ErrStageGroupUnaryOperator,
			"The "+name+" accumulator is a unary operator",
			name+" (accumulator)",
		)
	}

	return nil
}

// push represents the $push accumulator: every value, in order.
type push struct{ arg any }

func newPush(args ...any) (Accumulator, error) {
	if err := unary("$push", args); err != nil {
		return nil, err
	}

	return &push{arg: args[0]}, nil
}

// Accumulate implements Accumulator interface.
func (p *push) Accumulate(iter types.DocumentsIterator) (any, error) {
	defer iter.Close()

	values := types.MakeArray(0)

	for {
		_, doc, err := iter.Next()
		if errors.Is(err, iterator.ErrIteratorDone) {
			break
		}

		if err != nil {
			return nil, lazyerrors.Error(err)
		}

		value, found, err := evaluate(p.arg, doc)
		if err != nil {
			return nil, err
		}

		if found {
			values.Append(value)
		}
	}

	return values, nil
}

// first represents the $first accumulator: the value for the group's first document.
type first struct{ arg any }

func newFirst(args ...any) (Accumulator, error) {
	if err := unary("$first", args); err != nil {
		return nil, err
	}

	return &first{arg: args[0]}, nil
}

// Accumulate implements Accumulator interface.
func (f *first) Accumulate(iter types.DocumentsIterator) (any, error) {
	defer iter.Close()

	_, doc, err := iter.Next()
	if errors.Is(err, iterator.ErrIteratorDone) {
		return types.Null, nil
	}

	if err != nil {
		return nil, lazyerrors.Error(err)
	}

	value, found, err := evaluate(f.arg, doc)
	if err != nil {
		return nil, err
	}

	if !found {
		return types.Null, nil
	}

	return value, nil
}

// check interfaces
var (
	_ Accumulator = (*push)(nil)
	_ Accumulator = (*first)(nil)
)
