package runtime

func registerNorm[T Float](r registry[T]) {}
