package runtime

func registerPool[T Float](r registry[T]) {}
