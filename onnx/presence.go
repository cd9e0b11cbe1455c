package onnx

// proto2 fields have presence: a field set to its zero value is written, an
// unset one is not. To re-encode an unedited model to the same bytes, a field
// that was absent stays absent while its value is still zero; any other value
// is written.

func optString(orig *string, v string) *string {
	if orig == nil && v == "" {
		return nil
	}
	return &v
}

func optInt64(orig *int64, v int64) *int64 {
	if orig == nil && v == 0 {
		return nil
	}
	return &v
}

func optInt32(orig *int32, v int32) *int32 {
	if orig == nil && v == 0 {
		return nil
	}
	return &v
}
